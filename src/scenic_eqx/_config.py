"""Experiment configs: `get_config()` files, `--config.key=value` overrides and their checks."""

import ast
import difflib
import importlib.util
import os

import ml_collections

from .loops import NO_WEIGHT_DECAY

# Every key a training config may set, with what it means. Unknown keys are errors, so
# a typo never silently falls back to a default.
CONFIG_KEYS = {
    "dataset_name": "a name from `scenic_eqx.data.list_datasets()`",
    "dataset": "extra keyword arguments of `data.get_dataset` (e.g. `data_dir`)",
    "batch_size": "global training batch size",
    "eval_batch_size": "global eval batch size",
    "model_name": "a name from `scenic_eqx.nn.list_models()`",
    "model": "constructor arguments overriding the model's variant",
    "task_name": "a name from `scenic_eqx.tasks.list_tasks()`",
    "task": "keyword arguments of the task's constructor",
    "optimizer": "the name of an optax optimizer taking `learning_rate` (e.g. 'adamw')",
    "optimizer_kwargs": "its other keyword arguments",
    "schedule": "the name of a schedule in `scenic_eqx.loops` (e.g. 'warmup_cosine_decay')",
    "schedule_kwargs": "its keyword arguments; `num_steps` is filled in",
    "learning_rate_multipliers": (
        "optional {parameter path prefix: factor} scaling the schedule for those "
        "parameters, e.g. {'backbone': 0.1}"
    ),
    "grad_clip_norm": "global-norm gradient clipping, or None",
    "num_train_steps": "number of optimizer steps",
    "log_every": "steps between training-metric records",
    "eval_every": "steps between evaluations",
    "checkpoint_every": "steps between checkpoints",
    "seed": "seeds the model, the run's randomness and the data order",
    "precision": "'float32' or 'bfloat16' (bfloat16 compute, float32 parameters and optimizer state)",
    "sharding": "parameter layout: 'replicated', 'fsdp', 'megatron' or a list of (pattern, spec) rules",
    "model_axis_size": "devices on the mesh's 'model' axis (tensor parallelism); 1 for data parallelism",
    "accumulate_steps": "micro-batches per optimizer step (gradient accumulation)",
    "steps_per_dispatch": "optimizer steps per call to the devices",
    "ema_decay": "decay of an exponential moving average of the parameters, or None",
    "frozen_parameters": "regular expressions of parameter paths that are not trained",
    "weight_decay_exclude": "regular expressions of parameter paths (besides 1-D arrays) without weight decay",
    "peak_flops_per_device": "the chip's peak FLOP/s for the MFU figure (None: looked up by device kind)",
}

# The value a config gets for each optional key it does not set, so that every key can
# be overridden from the command line.
DEFAULTS = {
    "learning_rate_multipliers": None,
    "precision": "float32",
    "sharding": "replicated",
    "model_axis_size": 1,
    "accumulate_steps": 1,
    "steps_per_dispatch": 1,
    "ema_decay": None,
    "frozen_parameters": (),
    "weight_decay_exclude": NO_WEIGHT_DECAY,
    "peak_flops_per_device": None,
}


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Calls `get_config()` of the Python file `spec` (`FILE` or `FILE:ARG`, as `get_config(ARG)`)."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`--config` file {path!r} does not exist.")
    module_spec = importlib.util.spec_from_file_location("_scenic_eqx_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"`--config` file {path!r} defines no `get_config()`.")
    config = module.get_config(arg) if arg else module.get_config()
    check_keys(config)
    with config.unlocked():
        for name, value in DEFAULTS.items():
            if name not in config:
                config[name] = value
    return config


def check_keys(config: ml_collections.ConfigDict) -> None:
    """Raises if `config` has a top-level key that no part of training reads."""
    unknown = sorted(set(config.keys()) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(
            f"Unknown config key(s) {unknown}. Valid keys: {', '.join(sorted(CONFIG_KEYS))}."
        )


def _parse_value(text: str, old):
    if isinstance(old, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() == "true"
    if isinstance(old, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(old, float) and isinstance(value, int):
        return float(value)
    return value


def apply_override(config: ml_collections.ConfigDict, assignment: str) -> None:
    """Applies `key.sub=value` to `config` in place; the value is parsed as the old one's type.

    Raises:
        ValueError: malformed assignment, or a key the config does not have (the message
            lists the keys there are).
    """
    dotted, sep, text = assignment.partition("=")
    if not sep or not dotted:
        raise ValueError(f"A config override must look like `key=value`; got {assignment!r}.")
    *parents, name = dotted.split(".")
    node, path = config, "config"
    for part in [*parents, name]:
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            keys = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            close = difflib.get_close_matches(part, keys, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"`{path}` has no key {part!r}.{hint} Valid keys: {', '.join(keys) or '(none)'}."
            )
        if part != name:
            node, path = node[part], f"{path}.{part}"
    old = node[name]
    try:
        value = _parse_value(text, old)
    except ValueError as error:
        raise ValueError(f"`{path}.{name}`: {error}.") from None
    with node.unlocked():
        node[name] = value
