"""Optional dependencies: each is imported where it is used, and a missing one names its extra.

`pip install scenic-eqx` brings the core (JAX, Equinox, optax, orbax, ...): models,
tasks, `loops.fit` and `data.from_arrays`. The rest comes with an extra, e.g.
`pip install 'scenic-eqx[data]'` for the TensorFlow / TFDS pipelines; `[all]` brings
every extra. A feature that cannot work without its package calls `require`; a sink
that `loops.fit` can do without (TensorBoard events) calls `optional` and is switched off.
"""

import importlib
import logging
import types

_LOGGER = logging.getLogger("scenic_eqx")

# (module, what is off) pairs already reported by `optional`: each is said once a process.
_REPORTED: set[tuple[str, str]] = set()


def _install_command(extra: str) -> str:
    return f"pip install 'scenic-eqx[{extra}]'"


def _is_missing(module: str, error: ModuleNotFoundError) -> bool:
    """Whether `error` says that `module` itself (or its package) is not installed.

    A module that is installed but fails to import one of its own dependencies is not
    missing: that error is left as it is.
    """
    return error.name is not None and (module == error.name or module.startswith(error.name + "."))


def require(module: str, extra: str, feature: str) -> types.ModuleType:
    """Imports `module`, which `feature` cannot work without.

    Arguments:
        module: the module to import, e.g. `"tensorflow_datasets"`.
        extra: the extra of `scenic-eqx` that installs it, e.g. `"data"`.
        feature: what needs it, as the user called it, e.g.
            `"scenic_eqx.data.get_dataset('digits')"`.

    Returns:
        The imported module.

    Raises:
        ImportError: `module` is not installed; the message names `feature` and the
            `pip install` command of `extra`.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if not _is_missing(module, error):
            raise
        raise ImportError(
            f"{feature} needs {module}, which is not installed: {_install_command(extra)}",
            name=module,
        ) from error


def optional(module: str, extra: str, switched_off: str) -> types.ModuleType | None:
    """Imports `module`, or says once that `switched_off` and returns None.

    Arguments:
        module: the module to import, e.g. `"tensorboardX"`.
        extra: the extra of `scenic-eqx` that installs it, e.g. `"logging"`.
        switched_off: what runs without it, e.g. `"TensorBoard events are off"`; logged
            (a warning of the `scenic_eqx` logger) the first time `module` is missing.

    Returns:
        The imported module, or None when it is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if not _is_missing(module, error):
            raise
        if (module, switched_off) not in _REPORTED:
            _REPORTED.add((module, switched_off))
            _LOGGER.warning("%s: %s is not installed (%s).", switched_off, module, _install_command(extra))
        return None
