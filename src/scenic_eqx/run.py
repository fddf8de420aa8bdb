"""Running a config: its dataset, model, task and optimizer, trained by `loops.fit`.

The `scenic-eqx` command is these functions; a project's own training function uses
the pieces it needs:

```python
from scenic_eqx import run

config = run.load_config("projects/foo/configs/smoke.py")
dataset = run.build_dataset(config)
model = run.build_model(config, run.num_outputs(dataset.meta_data), key=jax.random.key(0))
task = run.build_task(config)
optimizer, schedule = run.build_optimizer(config)
```

A config names models, tasks and datasets from the registries (`nn.register`,
`tasks.register`, `data.register` add one); `config.optimizer` an optax optimizer or a
function (a config file's `get_optimizer`); `config.trainer` a project's own training
function, which `scenic-eqx train` calls instead of `train` (see `get_trainer`).
"""

import dataclasses
import functools
import inspect
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import equinox as eqx
import jax
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import PRNGKeyArray

from . import data, loops, nn, tasks
from ._extras import optional, require

# Configs are `ml_collections.ConfigDict`s, of the `[cli]` extra: checked before `_config`.
ml_collections = require("ml_collections", "cli", "scenic_eqx.run")

from ._config import (
    apply_override as apply_override,
    load_config as load_config,
    load_saved_config as load_saved_config,
)
from ._imports import import_file as import_file, load_function
from ._optimizer import (
    build_optimizer as build_optimizer,
    list_optimizers as list_optimizers,
)


def build_dataset(
    config: ml_collections.ConfigDict, name: str | None = None, options: dict | None = None
) -> data.Dataset:
    """This host's share of the dataset `config.dataset_name`, with `config.dataset`'s options.

    `config.batch_size` and `config.eval_batch_size` are global: each host reads its
    share of each batch, and the training order is seeded by `config.seed`. `name` and
    `options`, when given, replace `config.dataset_name` and `config.dataset` (a
    co-training dataset's).
    """
    if config.batch_size % jax.process_count() or config.eval_batch_size % jax.process_count():
        raise ValueError(
            f"`config.batch_size` (={config.batch_size}) and `config.eval_batch_size` "
            f"(={config.eval_batch_size}) must divide by the number of hosts (={jax.process_count()})."
        )
    return data.get_dataset(
        config.dataset_name if name is None else name,
        batch_size=config.batch_size // jax.process_count(),
        eval_batch_size=config.eval_batch_size // jax.process_count(),
        shuffle_seed=config.seed,
        **(config.dataset if options is None else options),
    )


def build_model(
    config: ml_collections.ConfigDict, num_classes: int, *, key: PRNGKeyArray, mesh: Mesh | None = None
) -> eqx.Module:
    """The model `config.model_name`, with `config.model`'s constructor arguments.

    Arguments:
        config: the config.
        num_classes: the size of the model's head (`num_outputs` of a dataset's `meta_data`).
        key: PRNG key for initialisation.
        mesh: with a `config.sharding` other than `"replicated"`, the model's arrays are
            created directly in their shardings on this mesh (never whole on one
            device), unless it loads pretrained weights.

    Returns:
        The model, an `eqx.Module` acting on one example.
    """
    make_model = functools.partial(nn.create, config.model_name, num_classes=num_classes, **config.model)
    return _create(config, lambda k: make_model(key=k), key, mesh)


def _create(config, make_model: Callable[[PRNGKeyArray], eqx.Module], key: PRNGKeyArray, mesh) -> eqx.Module:
    """`make_model(key)`, created directly sharded on `mesh` unless `config.sharding` is
    `"replicated"` or the model loads pretrained weights."""
    loads_weights = any(config.model.get(name) for name in ("weights", "backbone_weights"))
    sharding = sharding_rules(config.get("sharding", "replicated"))
    if mesh is None or sharding == "replicated" or loads_weights:
        return make_model(key)
    return loops.create_sharded(make_model, key, mesh=mesh, sharding=sharding)


def num_outputs(meta_data: dict[str, Any]) -> int:
    """The size of the model's head for a dataset: its `num_classes`, or for float targets
    of one axis (`meta_data["label_shape"] == (d,)`, as `data.from_arrays` records) `d`.

    Raises:
        ValueError: the dataset records neither.
    """
    if "num_classes" in meta_data:
        return meta_data["num_classes"]
    shape = meta_data.get("label_shape")
    if isinstance(shape, tuple) and len(shape) == 1:
        return shape[0]
    raise ValueError(
        "The dataset's `meta_data` must record `num_classes` (class labels) or a one-axis "
        "`label_shape` (regression targets of shape (N, d)) to size the model's head; for "
        "scalar targets give labels of shape (N, 1). "
        f"Received: num_classes absent, label_shape={shape!r}."
    )


def build_task(config: ml_collections.ConfigDict) -> tasks.AbstractTask:
    """The task `config.task_name`, with `config.task`'s constructor arguments."""
    return tasks.create_task(config.task_name, **config.task)


@dataclasses.dataclass(frozen=True)
class CoTrainingData:
    """The batches of a co-training run: one batch of every dataset per step (see
    `data.co_training_batches`); `datasets` holds each `data.Dataset`."""

    datasets: dict[str, data.Dataset]
    train_iter: Iterator[dict]
    valid_iter: Iterable[dict]
    test_iter: Iterable[dict]


_CO_TRAINING_KEYS = {"dataset_name", "dataset", "task_name", "task", "weight"}


def build_co_training(
    config: ml_collections.ConfigDict, *, mesh: Mesh | None = None
) -> tuple[CoTrainingData, nn.PerDatasetHeads, tasks.CoTrainingTask]:
    """The datasets, model and task of a co-training config (PolyViT).

    `config.co_training` is `{name: {dataset_name, dataset, task_name, task, weight}}`:
    each dataset with its options (read with the shared `config.batch_size`,
    `config.eval_batch_size` and `config.seed`), its task and its loss weight (default
    1). The model is `config.model_name` with one head per dataset
    (`nn.PerDatasetHeads`), each dataset's view initialised as that dataset's
    single-dataset run of the same config would be (the same key, its own head size).

    Returns:
        `(batches, model, task)`.
    """
    both = [key for key in ("dataset_name", "dataset", "task_name", "task") if config.get(key) is not None]
    if both:
        raise ValueError(
            f"`config.co_training` replaces {', '.join(both)}: give each co-trained dataset's in its "
            f"entry instead. Received: a config with `co_training` and {', '.join(both)}."
        )
    entries = dict(config.co_training)
    for name, entry in entries.items():
        unknown = sorted(set(entry) - _CO_TRAINING_KEYS)
        missing = sorted({"dataset_name", "task_name"} - set(entry))
        if unknown or missing:
            raise ValueError(
                f"`config.co_training.{name}` must have `dataset_name` and `task_name`, and may have "
                f"{', '.join(sorted(_CO_TRAINING_KEYS - {'dataset_name', 'task_name'}))}. Received: "
                f"unknown {unknown}, missing {missing}."
            )
    datasets = {
        name: build_dataset(config, entry.dataset_name, entry.get("dataset", {}))
        for name, entry in entries.items()
    }
    sizes = {name: num_outputs(dataset.meta_data) for name, dataset in datasets.items()}

    def make_model(key):
        models = {
            name: nn.create(config.model_name, num_classes=size, **config.model, key=key)
            for name, size in sizes.items()
        }
        return nn.PerDatasetHeads(next(iter(models.values())), {name: m.head for name, m in models.items()})

    task = tasks.CoTrainingTask(
        {
            name: tasks.create_task(entry.task_name, **entry.get("task", {}))
            for name, entry in entries.items()
        },
        {name: entry.get("weight", 1.0) for name, entry in entries.items()},
    )
    batches = CoTrainingData(
        datasets,
        data.co_training_batches({name: dataset.train_iter for name, dataset in datasets.items()}),
        data.co_training_eval_batches({name: dataset.valid_iter for name, dataset in datasets.items()}),
        data.co_training_eval_batches({name: dataset.test_iter for name, dataset in datasets.items()}),
    )
    return batches, _create(config, make_model, _model_key(config), mesh), task


def _build(config: ml_collections.ConfigDict, mesh: Mesh, model: eqx.Module | None = None):
    """`(batches, model, task)` of `config`: a `Dataset` or, for a co-training config,
    `CoTrainingData`; `model`, when given, instead of the config's."""
    if config.get("co_training"):
        if model is not None:
            raise ValueError(
                "A co-training config builds its own model (one head per dataset). Received: `model`."
            )
        return build_co_training(config, mesh=mesh)
    dataset = build_dataset(config)
    if model is None:
        model = build_model(config, num_outputs(dataset.meta_data), key=_model_key(config), mesh=mesh)
    return dataset, model, build_task(config)


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


def _model_key(config: ml_collections.ConfigDict) -> PRNGKeyArray:
    return jax.random.fold_in(jax.random.key(config.seed), 0)


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    model: eqx.Module | None = None,
    evaluations: Sequence[loops.PeriodicEvaluation] = (),
) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming if it holds a checkpoint) and evaluates on test.

    Leaves in `workdir`: `checkpoints/`, `metrics.jsonl`, TensorBoard events,
    `config.json` (what `load_saved_config` reads), `test_metrics.json` and
    `training_curves.png`. `config.trainer` is not read here: `get_trainer` is.

    A project's trainer may pass its own `model` (built otherwise than `build_model`
    builds it, e.g. without a classifier head) and `evaluations` that `loops.fit` runs
    periodically and that are run once more at the end, their results joining the test
    metrics as `<name>_<metric>`.

    Returns:
        The test metrics (with `ema_<name>` metrics of the parameter average when
        `config.ema_decay` is set).

    Raises:
        loops.Preempted: on SIGTERM, after saving the step reached (exit code 143);
            the same command resumes the run.
    """
    os.makedirs(workdir, exist_ok=True)
    mesh = build_mesh(config)
    dataset, model, task = _build(config, mesh, model)
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
        evaluations=evaluations,
    )
    results = _test_metrics(config, state, task, dataset, mesh)
    for evaluation in evaluations:
        results.update(evaluation.run(state.model, state.model_state, mesh))
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "test_metrics.json"), "w") as f:
            json.dump(results, f, indent=2)
        if optional("matplotlib", "logging", "The training-curves plot is off") is not None:
            loops.plot_metrics(
                os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "training_curves.png")
            )
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


def _restore(config: ml_collections.ConfigDict, workdir: str):
    """The train state of the latest checkpoint in `workdir`, the batches, task and mesh."""
    mesh = build_mesh(config)
    dataset, model, task = _build(config, mesh)
    optimizer = loops.with_params_ema(build_optimizer(config)[0], config.get("ema_decay"))
    checkpointer = loops.Checkpointer(os.path.join(workdir, "checkpoints"))
    like, _ = loops.init_placed_train_state(
        model, optimizer, key=jax.random.key(0), mesh=mesh,
        sharding=sharding_rules(config.get("sharding", "replicated")),
    )  # fmt: skip
    state = checkpointer.restore(train_state=like)["train_state"]
    checkpointer.close()
    return state, dataset, task, mesh


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Test metrics of the latest checkpoint in `workdir`, trained with `config`.

    `load_saved_config(workdir)` gives the config the run saved.
    """
    state, dataset, task, mesh = _restore(config, workdir)
    return _test_metrics(config, state, task, dataset, mesh)


def export(
    config: ml_collections.ConfigDict, workdir: str, output: str, *, platforms: tuple[str, ...] | None = None
) -> str:
    """Exports the model of the latest checkpoint in `workdir` with `loops.export_model`.

    The artifact takes batches of the dataset's inputs (any batch size) and runs without
    the model's code; `loops.load_exported(output)` loads it.

    Arguments:
        config: the run's config (`load_saved_config(workdir)`).
        workdir: the run's directory.
        output: the artifact's path; its description goes to `output + ".json"`.
        platforms: where the artifact may run (e.g. `("cpu", "cuda")`); None: this
            machine's default backend.

    Returns:
        `output`.
    """
    if config.get("co_training"):
        raise ValueError(
            "`config` is a co-training config (`config.co_training`): its model takes a batch of "
            "every dataset. Export one dataset's model instead: `loops.export_model(model.view(name), "
            "...)` on the restored model. Received: a config with `co_training`."
        )
    state, dataset, _, _ = _restore(config, workdir)
    return loops.export_model(
        state.model, output, input_shape=dataset.meta_data.input_shape[1:],
        input_dtype=dataset.meta_data.input_dtype, model_state=state.model_state, platforms=platforms,
    )  # fmt: skip


def get_trainer(config: ml_collections.ConfigDict) -> Callable[[ml_collections.ConfigDict, str], Any]:
    """The training function of `config`: its project's `config.trainer`, else `train`.

    `config.trainer` is `FILE.py:NAME` (relative paths start at the current directory)
    or `module:NAME`; it is called as `NAME(config, workdir)` and may return test
    metrics, `{name: value}`.

    Raises:
        ValueError, FileNotFoundError: `config.trainer` names no such file, module or
            function, or a function that cannot be called as `NAME(config, workdir)`.
    """
    reference = config.get("trainer")
    if reference is None:
        return train
    trainer = load_function(reference, argument="config.trainer")
    try:
        inspect.signature(trainer).bind(config, "workdir")
    except TypeError:
        raise ValueError(
            f"`config.trainer` (={reference!r}) must be a function of `(config, workdir)`. "
            f"Received: `{getattr(trainer, '__name__', trainer)}{inspect.signature(trainer)}`."
        ) from None
    except ValueError:  # a callable without a signature (a builtin): let the call decide
        pass
    return trainer
