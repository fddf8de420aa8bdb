"""scenic_eqx: a JAX library for vision research in the spirit of Scenic, on Equinox.

`import scenic_eqx` never imports TensorFlow: only the pipelines in `scenic_eqx.data` do,
when a dataset is built.

Shape checks are on by default: every jaxtyping annotation of `scenic_eqx.nn` and
`scenic_eqx.tasks` is checked by beartype when the function is called (under `jit`, once
per input shape, while tracing), so a wrong input raises `jaxtyping.TypeCheckError`
naming the parameter, its annotated axes and the array received. Set the environment
variable `SCENIC_EQX_SHAPE_CHECKS=0` before importing scenic_eqx to leave the modules
unchecked, or call `jaxtyping.config.update("jaxtyping_disable", True)` to skip the checks
from then on. See `scenic_eqx._shape_checks`.
"""

from . import _shape_checks

# Before the subpackages: the hook checks only the modules imported after it.
_shape_checks.install()

from . import (
    loops as loops,
    nn as nn,
    tasks as tasks,
)

__version__ = "0.1.0"
