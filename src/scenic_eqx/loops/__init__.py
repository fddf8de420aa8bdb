"""Training and evaluation: steps, `fit`, `evaluate`, checkpoints, sharding, schedules, export."""

from ._accumulate import accumulate_gradients as accumulate_gradients
from ._apply import apply_model as apply_model
from ._batch_checks import check_batch as check_batch
from ._checkpoint import Checkpointer as Checkpointer, CheckpointSaveError as CheckpointSaveError
from ._ema import ema_model as ema_model, params_ema as params_ema, with_params_ema as with_params_ema
from ._evaluate import evaluate as evaluate
from ._export import export_model as export_model, load_exported as load_exported
from ._features import extract_features as extract_features
from ._fine_tuning import (
    NO_WEIGHT_DECAY as NO_WEIGHT_DECAY,
    freeze as freeze,
    is_placeholder as is_placeholder,
    parameter_path as parameter_path,
    weight_decay_mask as weight_decay_mask,
)
from ._fit import count_parameters as count_parameters, fit as fit
from ._linear_classifiers import (
    LinearClassifier as LinearClassifier,
    fit_logistic_regression as fit_logistic_regression,
    fit_ridge_classifier as fit_ridge_classifier,
)
from ._manifest import CorruptCheckpointError as CorruptCheckpointError
from ._partitioning import (
    FSDP_MIN_SIZE as FSDP_MIN_SIZE,
    MEGATRON_RULES as MEGATRON_RULES,
    Rule as Rule,
    device_mesh as device_mesh,
    opt_state_shardings as opt_state_shardings,
    parameter_shardings as parameter_shardings,
    train_state_shardings as train_state_shardings,
)
from ._peak_flops import (
    model_flops_utilization as model_flops_utilization,
    peak_flops_per_device as peak_flops_per_device,
)
from ._periodic_evaluation import PeriodicEvaluation as PeriodicEvaluation
from ._piecewise_schedules import (
    warmup_piecewise_constant as warmup_piecewise_constant,
    warmup_step_decay as warmup_step_decay,
)
from ._placement import (
    create_sharded as create_sharded,
    init_placed_train_state as init_placed_train_state,
    place as place,
)
from ._plot import plot_metrics as plot_metrics
from ._precision import Precision as Precision, get_precision as get_precision
from ._preemption import PREEMPTED_EXIT_CODE as PREEMPTED_EXIT_CODE, Preempted as Preempted
from ._prefetch import prefetch_to_mesh as prefetch_to_mesh
from ._saved_model import export_saved_model as export_saved_model
from ._schedules import (
    clip_by_global_norm as clip_by_global_norm,
    constant as constant,
    warmup_cosine_decay as warmup_cosine_decay,
    warmup_exponential_decay as warmup_exponential_decay,
    warmup_linear_decay as warmup_linear_decay,
    warmup_polynomial_decay as warmup_polynomial_decay,
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
from ._transfer import (
    FewShotLinearEvaluator as FewShotLinearEvaluator,
    LinearProbeEvaluator as LinearProbeEvaluator,
)
from ._watchdog import WATCHDOG_EXIT_CODE as WATCHDOG_EXIT_CODE
