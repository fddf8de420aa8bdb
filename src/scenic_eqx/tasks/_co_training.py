"""Co-training: one task per dataset, their losses weighted and summed (PolyViT)."""

import re
from collections.abc import Mapping

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from ._task import AbstractTask, Batch, Metrics

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def dataset_batch(batch: Batch, name: str) -> Batch:
    """Dataset `name`'s own batch out of a co-training batch (`data.co_training_batches`):
    `{key: value[name]}` for every key that holds a value for it."""
    return {key: value[name] for key, value in batch.items() if isinstance(value, Mapping) and name in value}


class CoTrainingTask(AbstractTask):
    """Several datasets trained at once, each with its own task and head.

    Its batches hold a batch of every dataset (`data.co_training_batches`: each entry a
    dict by dataset name) and the model's outputs are a dict by dataset name too
    (`nn.PerDatasetHeads`). The loss is `sum(weights[d] * tasks[d].loss(...))` over the
    datasets of non-zero weight: weights scale each dataset's loss and are not
    normalised (PolyViT's one batch per task per step, its gradients summed). A dataset
    of weight 0 takes no part in the loss (its loss is not even computed, so neither
    its gradient nor a non-finite value reaches the update) but its metrics are still
    reported: with the other datasets' data, keys and initial parameters, the run is
    the single-dataset run of the others, and logs this one as it stands.

    Metrics are each task's, named `<dataset>_<metric>` (`digits_accuracy`,
    `mnist_loss`, ...), each summarized by its own task.

    Fields:
        tasks: `{dataset_name: task}`; names are letters, digits and underscores.
            Tasks that score with an `Evaluator` (COCO AP) are not supported here.
        weights: `{dataset_name: weight}`, the same names, non-negative numbers, at
            least one positive; all 1 when not given. Kept as `(name, weight)` pairs.

    Reference: Likhosherstov et al., "PolyViT: Co-training Vision Transformers on
    Images, Videos and Audio", 2021.
    """

    tasks: dict[str, AbstractTask]
    weights: tuple[tuple[str, float], ...] = eqx.field(static=True)

    def __init__(self, tasks: Mapping[str, AbstractTask], weights: Mapping[str, float | int] | None = None):
        if not isinstance(tasks, Mapping) or not tasks:
            raise ValueError(
                f"`tasks` must be a non-empty dict `{{dataset_name: task}}`. Received: {tasks!r}."
            )
        for name, task in tasks.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ValueError(
                    "`tasks`: dataset names must be letters, digits and underscores, starting with a "
                    f"letter (they prefix the metrics). Received: {name!r}."
                )
            if not isinstance(task, AbstractTask):
                raise TypeError(f"`tasks[{name!r}]` must be a task (`AbstractTask`). Received: {task!r}.")
            if task.make_evaluator() is not None:
                raise ValueError(
                    f"`tasks[{name!r}]` ({type(task).__name__}) scores with an `Evaluator`, which "
                    "co-training does not combine yet. Received: a task whose `make_evaluator` returns one."
                )
        weights = {name: 1.0 for name in tasks} if weights is None else weights
        if not isinstance(weights, Mapping) or set(weights) != set(tasks):
            received = sorted(weights) if isinstance(weights, Mapping) else weights
            raise ValueError(
                f"`weights` must give a weight to each dataset of `tasks` ({sorted(tasks)}) and no "
                f"other. Received: {received!r}."
            )
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
                raise ValueError(f"`weights[{name!r}]` must be a non-negative number. Received: {weight!r}.")
        if not any(weight > 0 for weight in weights.values()):
            raise ValueError(f"`weights`: at least one weight must be positive. Received: {dict(weights)!r}.")
        for name in tasks:
            clashes = [other for other in tasks if other != name and other.startswith(f"{name}_")]
            if clashes:
                raise ValueError(
                    f"`tasks`: dataset name {name!r} followed by `_` begins {clashes[0]!r}, so their "
                    f"metric names could clash. Received: {sorted(tasks)}."
                )
        self.tasks = dict(tasks)
        self.weights = tuple((name, float(weights[name])) for name in sorted(tasks))

    def _outputs_of(self, outputs: PyTree, name: str) -> PyTree:
        if not isinstance(outputs, Mapping) or name not in outputs:
            received = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise ValueError(
                f"CoTrainingTask: the model's outputs must be a dict by dataset name with {name!r} "
                f"(as `nn.PerDatasetHeads` returns). Received: {received}."
            )
        return outputs[name]

    def loss(self, outputs: PyTree, batch: Batch) -> Float[Array, ""]:
        """`sum(weights[d] * tasks[d].loss(outputs[d], batch of d))` over positive weights.

        Arguments:
            outputs: `{dataset_name: that dataset's model outputs}`.
            batch: a co-training batch, `{key: {dataset_name: value}}`.

        Returns:
            A float32 scalar.
        """
        total = jnp.zeros((), jnp.float32)
        for name, weight in self.weights:
            if weight > 0:
                loss = self.tasks[name].loss(self._outputs_of(outputs, name), dataset_batch(batch, name))
                total = total + (loss if weight == 1.0 else weight * loss)
        return total

    def metrics(self, outputs: PyTree, batch: Batch) -> Metrics:
        """Every task's metrics, named `<dataset>_<metric>`, whatever the weights."""
        metrics = {}
        for name, task in sorted(self.tasks.items()):
            own = task.metrics(self._outputs_of(outputs, name), dataset_batch(batch, name))
            metrics.update({f"{name}_{metric}": pair for metric, pair in own.items()})
        return metrics

    def summarize(self, totals: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        """Each dataset's metrics, summarized by its own task."""
        summary = {}
        for name, task in self.tasks.items():
            prefix = f"{name}_"
            own = {
                metric[len(prefix) :]: pair for metric, pair in totals.items() if metric.startswith(prefix)
            }
            summary.update({f"{prefix}{metric}": value for metric, value in task.summarize(own).items()})
        return summary
