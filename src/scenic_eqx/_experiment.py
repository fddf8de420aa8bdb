"""Running a config: dataset, model, task and optimizer by name, then `loops.fit`."""

import difflib
import functools
import inspect
import json
import os

import jax
import ml_collections
import optax

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
    def make_optimizer(learning_rate):
        return getattr(optax, config.optimizer)(learning_rate=learning_rate, **config.optimizer_kwargs)

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
    return loops.clip_by_global_norm(optimizer, config.grad_clip_norm), schedule


def _group_labels(prefixes: tuple[str, ...], params):
    """Each parameter's `learning_rate_multipliers` group: the longest prefix of its
    path (`backbone.stages[0]...`) among `prefixes`, else `"default"`."""
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


def build(config: ml_collections.ConfigDict):
    """The dataset, model and task of `config`."""
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
    model = nn.create(
        config.model_name,
        num_classes=dataset.meta_data["num_classes"],
        key=jax.random.fold_in(jax.random.key(config.seed), 0),
        **config.model,
    )
    task = tasks.create_task(config.task_name, **config.task)
    return dataset, model, task


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming if it holds a checkpoint) and evaluates on test.

    Leaves in `workdir`: `checkpoints/`, `metrics.jsonl`, TensorBoard events,
    `config.json`, `test_metrics.json` and `training_curves.png`.

    Returns:
        The test metrics.
    """
    os.makedirs(workdir, exist_ok=True)
    dataset, model, task = build(config)
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
        schedule=schedule,
    )
    results = loops.evaluate(state.model, task, dataset.test_iter, model_state=state.model_state)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "test_metrics.json"), "w") as f:
            json.dump(results, f, indent=2)
        loops.plot_metrics(os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "training_curves.png"))
    return results


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Test metrics of the latest checkpoint in `workdir`, trained with `config`."""
    dataset, model, task = build(config)
    optimizer, _ = build_optimizer(config)
    checkpointer = loops.Checkpointer(os.path.join(workdir, "checkpoints"))
    like = loops.init_train_state(model, optimizer, key=jax.random.key(0))
    state = checkpointer.restore(train_state=like)["train_state"]
    checkpointer.close()
    return loops.evaluate(state.model, task, dataset.test_iter, model_state=state.model_state)
