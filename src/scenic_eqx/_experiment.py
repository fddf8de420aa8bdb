"""Running a config: dataset, model, task and optimizer by name, then `loops.fit`."""

import difflib
import functools
import inspect
import json
import os

import jax
import ml_collections
import optax
from jax.sharding import Mesh, PartitionSpec

from . import loops, nn, tasks

_SCHEDULES = {
    "constant": loops.constant,
    "warmup_cosine_decay": loops.warmup_cosine_decay,
    "warmup_linear_decay": loops.warmup_linear_decay,
    "warmup_rsqrt_decay": loops.warmup_rsqrt_decay,
}


def _unknown(kind: str, name: str, known) -> ValueError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return ValueError(f"Unknown {kind} (={name!r}).{hint} Valid choices: {', '.join(sorted(known))}.")


def build_optimizer(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax optimizer and learning-rate schedule that `config` names."""
    if config.schedule not in _SCHEDULES:
        raise _unknown("`config.schedule`", config.schedule, _SCHEDULES)
    make_schedule = _SCHEDULES[config.schedule]
    kwargs = dict(config.schedule_kwargs)
    if "num_steps" in inspect.signature(make_schedule).parameters:
        kwargs["num_steps"] = config.num_train_steps
    schedule = make_schedule(**kwargs)
    optimizers = [n for n, f in vars(optax).items() if callable(f) and "learning_rate" in _parameters(f)]
    if config.optimizer not in optimizers:
        raise _unknown("`config.optimizer`", config.optimizer, optimizers)
    make_optimizer = functools.partial(_named_optimizer, config)
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


def build(config: ml_collections.ConfigDict, mesh: Mesh | None = None):
    """The dataset, model and task of `config`.

    With a `mesh` and a `config.sharding` other than `"replicated"`, the model's arrays
    are created directly in their shardings (never whole on one device), unless it
    loads pretrained weights.
    """
    from . import data  # TensorFlow comes in with the pipelines, only when a run starts

    if config.batch_size % jax.process_count() or config.eval_batch_size % jax.process_count():
        raise ValueError(
            f"`config.batch_size` (={config.batch_size}) and `config.eval_batch_size` "
            f"(={config.eval_batch_size}) must divide by the number of hosts (={jax.process_count()})."
        )
    dataset = data.get_dataset(
        config.dataset_name,
        batch_size=config.batch_size // jax.process_count(),
        eval_batch_size=config.eval_batch_size // jax.process_count(),
        shuffle_seed=config.seed,
        **config.dataset,
    )
    make_model = functools.partial(
        nn.create, config.model_name, num_classes=dataset.meta_data["num_classes"], **config.model
    )
    key = jax.random.fold_in(jax.random.key(config.seed), 0)
    loads_weights = any(config.model.get(name) for name in ("weights", "backbone_weights"))
    sharding = sharding_rules(config.get("sharding", "replicated"))
    if mesh is None or sharding == "replicated" or loads_weights:
        model = make_model(key=key)
    else:
        model = loops.create_sharded(lambda k: make_model(key=k), key, mesh=mesh, sharding=sharding)
    task = tasks.create_task(config.task_name, **config.task)
    return dataset, model, task


def sharding_rules(sharding):
    """`config.sharding` as `fit` takes it: a name, or rules whose specs may be written as
    lists of axis names (`["model", None]`, as JSON gives them) instead of `PartitionSpec`s."""
    if isinstance(sharding, str):
        return sharding
    return [
        (pattern, spec if isinstance(spec, str | PartitionSpec) else PartitionSpec(*spec))
        for pattern, spec in sharding
    ]


def build_mesh(config: ml_collections.ConfigDict) -> Mesh:
    """Every device, on a `("data", "model")` mesh with `config.model_axis_size` on `"model"`."""
    return loops.device_mesh(config.get("model_axis_size", 1))


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming if it holds a checkpoint) and evaluates on test.

    Leaves in `workdir`: `checkpoints/`, `metrics.jsonl`, TensorBoard events,
    `config.json`, `test_metrics.json` and `training_curves.png`.

    Returns:
        The test metrics (with `ema_<name>` metrics of the parameter average when
        `config.ema_decay` is set).

    Raises:
        loops.Preempted: on SIGTERM, after saving the step reached (exit code 143);
            the same command resumes the run.
    """
    os.makedirs(workdir, exist_ok=True)
    mesh = build_mesh(config)
    dataset, model, task = build(config, mesh)
    optimizer, schedule = build_optimizer(config)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json(indent=2))
    state, _ = loops.fit(
        model,
        task,
        dataset.train_iter,
        optimizer=optimizer,
        num_steps=config.num_train_steps,
        key=jax.random.fold_in(jax.random.key(config.seed), 1),
        eval_batches=dataset.valid_iter,
        eval_every=config.eval_every,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        workdir=workdir,
        mesh=mesh,
        schedule=schedule,
        sharding=sharding_rules(config.get("sharding", "replicated")),
        precision=config.get("precision", "float32"),
        accumulate_steps=config.get("accumulate_steps", 1),
        steps_per_dispatch=config.get("steps_per_dispatch", 1),
        ema_decay=config.get("ema_decay"),
        peak_flops_per_device=config.get("peak_flops_per_device"),
        step_timeout_seconds=config.get("step_timeout_seconds"),
        debug_nans=config.get("debug_nans", False),
        async_checkpoints=config.get("async_checkpoints", False),
    )
    results = _test_metrics(config, state, task, dataset, mesh)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "test_metrics.json"), "w") as f:
            json.dump(results, f, indent=2)
        loops.plot_metrics(os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "training_curves.png"))
    return results


def _test_metrics(config, state: loops.TrainState, task, dataset, mesh) -> dict[str, float]:
    """Test metrics of the trained parameters, and of their average (`ema_`) if kept."""
    evaluate = functools.partial(
        loops.evaluate, task=task, batches=dataset.test_iter, model_state=state.model_state,
        mesh=mesh, precision=config.get("precision", "float32"),
    )  # fmt: skip
    results = evaluate(state.model)
    if config.get("ema_decay") is not None:
        results.update({f"ema_{k}": v for k, v in evaluate(loops.ema_model(state)).items()})
    return results


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Test metrics of the latest checkpoint in `workdir`, trained with `config`."""
    mesh = build_mesh(config)
    dataset, model, task = build(config, mesh)
    optimizer = loops.with_params_ema(build_optimizer(config)[0], config.get("ema_decay"))
    checkpointer = loops.Checkpointer(os.path.join(workdir, "checkpoints"))
    like, _ = loops.init_placed_train_state(
        model, optimizer, key=jax.random.key(0), mesh=mesh,
        sharding=sharding_rules(config.get("sharding", "replicated")),
    )  # fmt: skip
    state = checkpointer.restore(train_state=like)["train_state"]
    checkpointer.close()
    return _test_metrics(config, state, task, dataset, mesh)
