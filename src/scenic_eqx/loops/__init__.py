"""Training and evaluation: steps, `fit`, `evaluate`, checkpoints, sharding, schedules."""

from ._apply import apply_model as apply_model
from ._checkpoint import Checkpointer as Checkpointer
from ._evaluate import evaluate as evaluate
from ._fit import count_parameters as count_parameters, fit as fit
from ._plot import plot_metrics as plot_metrics
from ._schedules import (
    clip_by_global_norm as clip_by_global_norm,
    constant as constant,
    warmup_cosine_decay as warmup_cosine_decay,
    warmup_linear_decay as warmup_linear_decay,
    warmup_rsqrt_decay as warmup_rsqrt_decay,
)
from ._sharding import (
    data_mesh as data_mesh,
    replicate as replicate,
    shard_batch as shard_batch,
)
from ._steps import make_eval_step as make_eval_step, make_train_step as make_train_step
from ._train_state import (
    TrainState as TrainState,
    init_train_state as init_train_state,
    partition_trainable as partition_trainable,
)
