"""scenic_eqx: a JAX library for vision research in the spirit of Scenic, on Equinox.

`import scenic_eqx` never imports TensorFlow: only the pipelines in `scenic_eqx.data` do,
when a dataset is built.
"""

from . import loops as loops
from . import nn as nn
from . import tasks as tasks

__version__ = "0.1.0"
