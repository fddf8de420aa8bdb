"""Experiment configs: `get_config()` files, `--config.key=value` overrides and their checks."""

import ast
import difflib
import inspect
import json
import os

import ml_collections

from ._imports import import_file
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
    "optimizer": (
        "a name from `scenic_eqx.run.list_optimizers()` (e.g. 'adamw'), or a function "
        "`FILE.py:NAME` or `module:NAME` called as `NAME(config, schedule)` that returns an optax "
        "`GradientTransformation`; a config file's own `get_optimizer` is named here by `load_config`"
    ),
    "optimizer_kwargs": "the named optimizer's other keyword arguments",
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
    "step_timeout_seconds": (
        "seconds without progress after which a process is taken to be stuck and exits (code 124); "
        "None: 600 on several processes, no timeout on one"
    ),
    "debug_nans": "check every step for a non-finite loss or gradient and name the parameter (slower)",
    "async_checkpoints": "go on training while a checkpoint is written (a crash may then lose it)",
    "co_training": (
        "optional {name: {dataset_name, dataset, task_name, task, weight}}: several datasets trained "
        "at once, each with its own head, task and loss weight (PolyViT), in place of dataset_name, "
        "dataset, task_name and task"
    ),
    "trainer": (
        "the project's own training function, `FILE.py:NAME` or `module:NAME`, which `scenic-eqx "
        "train` calls as `NAME(config, workdir)` instead of `scenic_eqx.run.train`; None: the library's"
    ),
    "config_file": (
        "the config file's path, set by `load_config`: `scenic-eqx eval` without `--config` imports "
        "it again, so that what it registers (models, tasks, datasets) is found"
    ),
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
    "step_timeout_seconds": None,
    "debug_nans": False,
    "async_checkpoints": False,
    "co_training": None,
    "trainer": None,
    "config_file": None,
}


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Calls `get_config()` of the Python file `spec` (`FILE` or `FILE:ARG`, as `get_config(ARG)`).

    The file is imported once per process (its top-level code, which may register models,
    tasks or datasets, runs once); `get_config` is called on every load. If the file also
    defines `get_optimizer(config, schedule)`, `config.optimizer` names it (`FILE:get_optimizer`).
    `config.config_file` is set to the file's absolute path; keys the config does not set
    get their `DEFAULTS`.
    """
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"`--config` must name an existing Python file (FILE or FILE:ARG). Received: "
            f"{spec!r}: the file {path!r} does not exist."
        )
    module = import_file(path)
    if not callable(getattr(module, "get_config", None)):
        raise ValueError(
            f"`--config` file must define `get_config()`. Received: {path!r}, which defines no "
            "`get_config()`."
        )
    config = _call_get_config(module.get_config, path, arg)
    check_keys(config)
    with config.unlocked():
        config.config_file = os.path.abspath(path)
        if hasattr(module, "get_optimizer"):
            _check_get_optimizer(module.get_optimizer, path)
            config.optimizer = f"{config.config_file}:get_optimizer"
    return _with_defaults(config)


def _check_get_optimizer(get_optimizer, path: str) -> None:
    """Raises unless `get_optimizer` can be called as `get_optimizer(config, schedule)`."""
    try:
        inspect.signature(get_optimizer).bind(None, None)
    except (TypeError, ValueError):
        raise ValueError(
            f"`get_optimizer` in {path!r} must be a function of `(config, schedule)` returning an "
            f"optax `GradientTransformation`. Received: {_describe(get_optimizer)}."
        ) from None


def _describe(value) -> str:
    try:
        return f"`{getattr(value, '__name__', type(value).__name__)}{inspect.signature(value)}`"
    except (TypeError, ValueError):
        return f"a {type(value).__name__}"


def _with_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    with config.unlocked():
        for name, value in DEFAULTS.items():
            if name not in config:
                config[name] = value
    return config


def load_saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run saved in `workdir/config.json`, with what its config file registers.

    JSON has no tuples: sequences come back as tuples, as configs write them. The config
    file the run was started from (`config.config_file`) is imported again (once per
    process), so that the models, tasks and datasets it registers are found, and so is
    its `get_optimizer`.

    Raises:
        FileNotFoundError: `workdir` holds no `config.json`, or the config file it names
            no longer exists.
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"`workdir` (={workdir!r}) holds no `config.json`, which a training run writes when "
            f"it starts; give the config file instead (`--config FILE`). Received: {workdir!r}."
        )
    with open(path) as f:
        config = ml_collections.ConfigDict(_tuples(json.load(f)))
    check_keys(config)
    config = _with_defaults(config)
    if config.config_file is not None:
        if not os.path.isfile(config.config_file):
            raise FileNotFoundError(
                f"`config.config_file` in {path!r} names {config.config_file!r}, which no longer "
                "exists; its code (registered models, tasks, datasets, `get_optimizer`) is needed. "
                f"Give the config file instead (`--config FILE`). Received: {config.config_file!r}."
            )
        import_file(config.config_file)
    return config


def _tuples(value):
    """`value` read from JSON, with every list a tuple."""
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def _call_get_config(get_config, path: str, arg: str) -> ml_collections.ConfigDict:
    """`get_config(arg)` (or `get_config()` without `:ARG`), checked to give a ConfigDict."""
    try:
        inspect.signature(get_config).bind(*([arg] if arg else []))
    except TypeError:
        form = "FILE:ARG" if not arg else "FILE, without `:ARG`"
        raise ValueError(
            f"`get_config` in {path!r} takes {'no argument' if arg else 'an argument'}, so "
            f"`--config` must be {form}. Received: {f'{path}:{arg}' if arg else path!r}."
        ) from None
    config = get_config(arg) if arg else get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(
            f"`get_config()` in {path!r} must return an `ml_collections.ConfigDict`. "
            f"Received: {type(config).__name__}."
        )
    return config


def check_keys(config: ml_collections.ConfigDict) -> None:
    """Raises if `config` has a top-level key that no part of training reads."""
    unknown = sorted(set(config.keys()) - set(CONFIG_KEYS))
    if unknown:
        hints = [
            f"{key!r} -> {close[0]!r}"
            for key in unknown
            if (close := difflib.get_close_matches(key, CONFIG_KEYS, n=1))
        ]
        hint = f" Did you mean {', '.join(hints)}?" if hints else ""
        raise ValueError(
            f"Unknown config key(s) {unknown}. Valid keys: {', '.join(sorted(CONFIG_KEYS))}."
            f"{hint} Received: {unknown}."
        )


def _literal(text: str):
    """`text` as a Python literal, or `_NOT_A_LITERAL`; `inf` and `nan` are floats."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if text.strip().lower().lstrip("+-") in ("inf", "infinity", "nan"):
        return float(text)
    return _NOT_A_LITERAL


_NOT_A_LITERAL = object()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_value(text: str, old):
    """`text` parsed as a value of the type of `old`, the value it replaces.

    Returns:
        The value. Raises a `ValueError` saying what was expected (without the key).
    """
    if isinstance(old, bool):
        if text.strip().lower() not in ("true", "false"):
            raise ValueError("must be true or false")
        return text.strip().lower() == "true"
    if isinstance(old, str):
        return text
    value = _literal(text)
    if _is_int(old):
        if not _is_int(value):
            raise ValueError("must be an integer")
        return value
    if isinstance(old, float):
        if not (_is_int(value) or isinstance(value, float)):
            raise ValueError("must be a number")
        return float(value)
    if isinstance(old, (tuple, list)):
        if not isinstance(value, (tuple, list)):
            raise ValueError("must be a sequence, e.g. `(1, 2)` or `('a',)`")
        return type(old)(value)
    if isinstance(old, (ml_collections.ConfigDict, dict)):
        if not isinstance(value, dict):
            keys = ", ".join(sorted(old.keys())) or "(none)"
            raise ValueError(
                f"is a group of keys ({keys}): set one of them (`key.sub=value`) or give a dict literal"
            )
        if isinstance(old, ml_collections.ConfigDict):
            return ml_collections.ConfigDict(value)
        return value
    # None (any type may replace it) or a value of another type: a literal, else the text.
    return text if value is _NOT_A_LITERAL else value


def apply_override(config: ml_collections.ConfigDict, assignment: str) -> None:
    """Applies `key.sub=value` to `config` in place; the value is parsed as the old one's type.

    An int stays an int (`1.5`, `1e3` or `abc` are refused), a float takes any number, a
    bool `true` or `false`, a sequence a tuple or list literal, a group of keys a dict
    literal; a string takes the text as it is, and a `None` any literal (else the text).

    Raises:
        ValueError: malformed assignment, a key the config does not have (the message
            lists the keys there are), or a value of the wrong type.
    """
    dotted, sep, text = assignment.partition("=")
    if not sep or not dotted:
        raise ValueError(f"A config override must look like `key=value`. Received: {assignment!r}.")
    *parents, name = dotted.split(".")
    node, path = config, "config"
    for part in [*parents, name]:
        if not isinstance(node, ml_collections.ConfigDict):
            raise ValueError(
                f"`{path}` is a value ({node!r}), not a group of keys, so it has no key "
                f"{part!r}. Received: `{assignment}`."
            )
        if part not in node:
            keys = sorted(node.keys())
            close = difflib.get_close_matches(part, keys, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"`{path}` has no key {part!r}.{hint} Valid keys: {', '.join(keys) or '(none)'}. "
                f"Received: `{assignment}`."
            )
        if part != name:
            node, path = node[part], f"{path}.{part}"
    old = node[name]
    try:
        value = _parse_value(text, old)
    except ValueError as error:
        group = isinstance(old, (dict, ml_collections.ConfigDict))
        like = "" if group else f", like its value in the config ({old!r})"
        raise ValueError(f"`{path}.{name}` {error}{like}. Received: {text!r}.") from None
    try:
        with node.unlocked():
            node[name] = value
    except TypeError as error:  # ml_collections' own type check, for types not parsed above.
        raise ValueError(
            f"`{path}.{name}` must keep the type of its value in the config ({old!r}): {error}. "
            f"Received: {text!r}."
        ) from None
