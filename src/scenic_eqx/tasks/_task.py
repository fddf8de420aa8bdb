"""The task contract: a loss and metrics over a batch, weighted by `batch_mask`."""

import abc

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float, PyTree

from ._evaluator import Evaluator

Batch = dict[str, PyTree]
Metrics = dict[str, tuple[Float[Array, "*value"], Float[Array, ""]]]


class AbstractTask(eqx.Module):
    """Bundles the loss and the metrics of one kind of problem.

    A task sees a whole batch: `outputs` are the model's outputs for every example
    (leading batch axis) and `batch` is the batch dict (`inputs`, a label pytree and
    `batch_mask`, 1.0 for real examples and 0.0 for padding).

    Metrics are returned as `(value_sum, normalizer)` pairs: the trainer sums both over
    devices, hosts and steps before dividing, so a metric is exact whatever the batch
    size or padding. Subclasses implement `loss` and `metrics` and are final.

    A metric that is not a ratio of sums (mean IoU from a confusion matrix) returns its
    sufficient statistics as an array `value_sum` and overrides `summarize`. One that
    needs every prediction at once (COCO AP) comes from an `Evaluator`: the task
    overrides `make_evaluator` and `evaluator_inputs`.
    """

    @abc.abstractmethod
    def loss(self, outputs: PyTree, batch: Batch) -> Float[Array, ""]:
        """The scalar training loss: a `batch_mask`-weighted mean over examples."""

    @abc.abstractmethod
    def metrics(self, outputs: PyTree, batch: Batch) -> Metrics:
        """`{name: (value_sum, normalizer)}`, each summed over the batch."""

    def summarize(self, totals: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        """Final metric values from `metrics` pairs summed over a whole run or eval set.

        The default divides each value sum by its normalizer; override it for metrics
        computed from accumulated statistics.
        """
        return {name: float(np.asarray(value) / np.asarray(norm)) for name, (value, norm) in totals.items()}

    def make_evaluator(self) -> Evaluator | None:
        """A fresh `Evaluator` for one evaluation, or `None` (the default) for none."""
        return None

    def evaluator_inputs(self, outputs: PyTree, batch: Batch) -> PyTree:
        """What the evaluator's `update` reads from one batch, computed on the device.

        Arrays with a leading batch axis, small enough to bring to the host (scored
        boxes rather than feature maps). Only called when `make_evaluator` returns one.
        """
        raise NotImplementedError(
            f"{type(self).__name__}.make_evaluator returns an evaluator, so it must "
            "also define `evaluator_inputs`"
        )
