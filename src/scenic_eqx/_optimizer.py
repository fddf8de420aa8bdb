"""A config's optimizer and learning-rate schedule: an optax optimizer by name, or a function."""

import difflib
import functools
import inspect
from collections.abc import Callable

import jax
import ml_collections
import optax

from . import loops
from ._imports import load_function

_SCHEDULES = {
    "constant": loops.constant,
    "warmup_cosine_decay": loops.warmup_cosine_decay,
    "warmup_exponential_decay": loops.warmup_exponential_decay,
    "warmup_linear_decay": loops.warmup_linear_decay,
    "warmup_piecewise_constant": loops.warmup_piecewise_constant,
    "warmup_polynomial_decay": loops.warmup_polynomial_decay,
    "warmup_rsqrt_decay": loops.warmup_rsqrt_decay,
    "warmup_step_decay": loops.warmup_step_decay,
}

# Optax optimizers whose `update` needs more than the gradients (here: the loss function
# itself, `value_fn`, for a line search), which the training step does not pass.
_NEEDS_MORE_THAN_GRADIENTS = ("lbfgs",)


def unknown_name(kind: str, name: str, known) -> ValueError:
    """The error for a `name` not among `known`, with the closest names and every choice."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return ValueError(f"Unknown {kind} (={name!r}).{hint} Valid choices: {', '.join(sorted(known))}.")


def list_optimizers() -> list[str]:
    """The optax optimizers a config may name, sorted.

    Those public functions of `optax` (`nadam` is a `functools.partial`) whose first
    parameter is `learning_rate` and that return a `GradientTransformation`; not the building blocks (`scale_by_*`), and not
    `lbfgs`, whose update needs the loss function.
    """
    return sorted(
        name
        for name, function in vars(optax).items()
        if callable(function)
        and not isinstance(function, type)  # the states' classes take `learning_rate` too
        and not name.startswith(("_", "scale_by_"))
        and name not in _NEEDS_MORE_THAN_GRADIENTS
        and _is_optimizer_signature(function)
    )


def _is_optimizer_signature(function) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False
    parameters = list(signature.parameters)
    returns = signature.return_annotation
    if isinstance(returns, str):  # an annotation left unevaluated: compare by name
        returns = getattr(optax, returns.rpartition(".")[2], None)
    returns_transformation = isinstance(returns, type) and issubclass(returns, optax.GradientTransformation)
    return bool(parameters) and parameters[0] == "learning_rate" and returns_transformation


def build_optimizer(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax optimizer and learning-rate schedule that `config` names.

    The schedule is `config.schedule` (a schedule of `scenic_eqx.loops`) with
    `config.schedule_kwargs`. The optimizer is `config.optimizer`: an optax optimizer by
    name (with `config.optimizer_kwargs`; weight decay then skips 1-D arrays and
    `config.weight_decay_exclude`), or a function `FILE.py:NAME` / `module:NAME` called as
    `NAME(config, schedule)`, as a config file's `get_optimizer` is (its weight decay is
    its own). Either way, `learning_rate_multipliers` (each group calls it with its own
    scaled schedule), `grad_clip_norm` and `frozen_parameters` apply on top.

    Returns:
        `(optimizer, schedule)`.
    """
    if config.schedule not in _SCHEDULES:
        raise unknown_name("`config.schedule`", config.schedule, _SCHEDULES)
    make_schedule = _SCHEDULES[config.schedule]
    kwargs = dict(config.schedule_kwargs)
    if "num_steps" in inspect.signature(make_schedule).parameters:
        kwargs["num_steps"] = config.num_train_steps
    schedule = make_schedule(**kwargs)
    make_optimizer = _optimizer_factory(config)
    multipliers = dict(config.get("learning_rate_multipliers") or {})
    if not multipliers:
        optimizer = make_optimizer(schedule)
    else:
        # One optimizer per group, each at its own multiple of the schedule (DETR trains
        # its backbone at a tenth of the transformer's rate).
        groups = {"default": make_optimizer(schedule)}
        for prefix, factor in multipliers.items():
            groups[prefix] = make_optimizer(lambda step, f=float(factor): f * schedule(step))
        optimizer = optax.multi_transform(groups, functools.partial(_group_labels, tuple(multipliers)))
    optimizer = loops.clip_by_global_norm(optimizer, config.grad_clip_norm)
    frozen = tuple(config.get("frozen_parameters") or ())
    if frozen:
        optimizer = loops.freeze(optimizer, frozen)
    return optimizer, schedule


def _optimizer_factory(config: ml_collections.ConfigDict) -> Callable[..., optax.GradientTransformation]:
    """A function of the learning rate (a schedule) giving the optimizer `config.optimizer` names."""
    if isinstance(config.optimizer, str) and ":" in config.optimizer:
        function = load_function(config.optimizer, argument="config.optimizer")
        return functools.partial(_called_optimizer, function, config)
    names = list_optimizers()
    if config.optimizer not in names:
        raise unknown_name("`config.optimizer`", config.optimizer, names)
    return functools.partial(_named_optimizer, config)


def _called_optimizer(function, config: ml_collections.ConfigDict, schedule) -> optax.GradientTransformation:
    """`function(config, schedule)`, checked to be an optax `GradientTransformation`."""
    optimizer = function(config, schedule)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"`config.optimizer` (={config.optimizer!r}) must return an optax "
            f"`GradientTransformation` (e.g. `optax.adamw(schedule)`). Received: a "
            f"{type(optimizer).__name__}."
        )
    return optimizer


def _named_optimizer(config: ml_collections.ConfigDict, learning_rate) -> optax.GradientTransformation:
    """`optax.<config.optimizer>(learning_rate, **config.optimizer_kwargs)`; weight decay,
    where the optimizer takes a `mask`, skips 1-D arrays and `config.weight_decay_exclude`."""
    kwargs = dict(config.optimizer_kwargs)
    make = getattr(optax, config.optimizer)
    if "mask" in _parameters(make) and "mask" not in kwargs and kwargs.get("weight_decay"):
        exclude = tuple(config.get("weight_decay_exclude", loops.NO_WEIGHT_DECAY))
        kwargs["mask"] = functools.partial(loops.weight_decay_mask, exclude=exclude)
    return make(learning_rate=learning_rate, **kwargs)


def _group_labels(prefixes: tuple[str, ...], params):
    """Each parameter's `learning_rate_multipliers` group: the longest prefix of its
    path (`backbone.stages[0]...`) among `prefixes`, else `"default"`."""
    if loops.is_placeholder(params):
        return "default"
    used = set()

    def label(path, _):
        name = jax.tree_util.keystr(path).lstrip(".")
        matches = [p for p in prefixes if name == p or name.startswith((p + ".", p + "["))]
        if not matches:
            return "default"
        used.add(group := max(matches, key=len))
        return group

    labels = jax.tree_util.tree_map_with_path(label, params)
    unused = [p for p in prefixes if p not in used]
    if unused:
        raise ValueError(
            f"`config.learning_rate_multipliers` names {unused}, which match no trainable "
            "parameter path (e.g. 'backbone' or 'encoder.blocks[0]')."
        )
    return labels


def _parameters(function) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return ()
