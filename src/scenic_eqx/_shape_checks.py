"""Runtime checks of the shapes and dtypes annotated in `scenic_eqx.nn` and `scenic_eqx.tasks`.

`import scenic_eqx` calls `install` before it imports its subpackages. `install` puts
jaxtyping's import hook in front of Python's importers, so every function, method and
module constructor of `scenic_eqx.nn` and `scenic_eqx.tasks` is compiled wrapped in
`jaxtyping.jaxtyped` with beartype as the checker. A call whose arrays disagree with the
annotations (`Float[Array, "height width channels"]`: wrong rank, integer dtype, an axis
bound to two sizes) raises `jaxtyping.TypeCheckError`, which names the parameter, its
annotation and the array received. Under `jit`, `vmap` or `eval_shape` the checks run
while tracing, once per input shape: a compiled step pays nothing per call.

Switches (see the README's "Shape checks"):

- `SCENIC_EQX_SHAPE_CHECKS=0` in the environment before `import scenic_eqx`: the hook is
  not installed, nothing is wrapped, the modules run as written.
- `jaxtyping.config.update("jaxtyping_disable", True)`, or `JAXTYPING_DISABLE=1` before
  jaxtyping is imported: the wrapped functions skip their checks from the next call on
  (every jaxtyping-checked function of the process, not only this package's); functions
  already traced under `jit` keep their compiled code.
"""

import functools
import os
import sys
from collections.abc import Callable

import jaxtyping

ENVIRONMENT_VARIABLE = "SCENIC_EQX_SHAPE_CHECKS"
CHECKED_PACKAGES = ("scenic_eqx.nn", "scenic_eqx.tasks")
# The checker the hook applies, by the dotted name jaxtyping's hook asks for.
TYPECHECKER = "scenic_eqx._shape_checks.beartype_on_first_call"

_ON, _OFF = ("1", "true"), ("0", "false")
_installed_hook = None


def requested() -> bool:
    """Whether the environment asks for the checks (`SCENIC_EQX_SHAPE_CHECKS`, default on).

    Raises:
        ValueError: the variable holds something other than 1, 0, true or false.
    """
    value = os.environ.get(ENVIRONMENT_VARIABLE, "1")
    normalized = value.strip().lower()
    if normalized in _ON or normalized in _OFF:
        return normalized in _ON
    raise ValueError(
        f"`{ENVIRONMENT_VARIABLE}` must be 1 (check the shapes annotated in scenic_eqx.nn and "
        f"scenic_eqx.tasks, the default) or 0 (do not). Received: {value!r}."
    )


def beartype_on_first_call(fn: Callable) -> Callable:
    """`beartype.beartype(fn)`, built when `fn` is first called rather than when decorated.

    The hook decorates every function of the checked packages while they are imported,
    most of which a program never calls; building beartype's checking code on first call
    (while tracing, under `jit`) takes about a third of the checks' cost off
    `import scenic_eqx` (see `benchmarks/shape_check_cost.py`). The checks are beartype's.
    """
    checked = None

    @functools.wraps(fn)
    def check_then_call(*args, **kwargs):
        nonlocal checked
        if checked is None:
            import beartype  # Imported when first needed, for the same reason.

            checked = beartype.beartype(fn)
        return checked(*args, **kwargs)

    return check_then_call


def install() -> None:
    """Installs the import hook that checks `CHECKED_PACKAGES`, unless switched off.

    Must run before those packages are imported: a module already imported stays
    unchecked. Calling it again does nothing.

    Raises:
        RuntimeError: a checked package was imported before the hook.
    """
    global _installed_hook
    if _installed_hook is not None or not requested():
        return
    imported = sorted(name for name in CHECKED_PACKAGES if name in sys.modules)
    if imported:
        raise RuntimeError(
            f"The shape checks must be installed before importing {', '.join(imported)}: "
            f"`import scenic_eqx` does it first. Received: {', '.join(imported)} already "
            "in `sys.modules`."
        )
    _installed_hook = jaxtyping.install_import_hook(list(CHECKED_PACKAGES), TYPECHECKER)


def installed() -> bool:
    """Whether `install` put the hook in place in this process."""
    return _installed_hook is not None
