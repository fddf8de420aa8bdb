"""Evaluators: metrics that need every prediction of an evaluation at once."""

import abc

import numpy as np


class Evaluator(abc.ABC):
    """Accumulates a whole evaluation's predictions on the host, then scores them.

    For metrics that are not ratios of sums, such as COCO average precision (ranks
    every detection of the evaluation set by score). A task returns a fresh evaluator
    from `make_evaluator()` for each evaluation; the evaluation loop passes `update`
    the task's `evaluator_inputs` of every batch (computed on the device, gathered from
    every device and host, padding examples included: their `batch_mask` is 0) and
    reports `result()` with the task's other metrics.
    """

    @abc.abstractmethod
    def update(self, inputs: dict[str, np.ndarray]) -> None:
        """Adds one batch: numpy arrays with a leading batch axis."""

    @abc.abstractmethod
    def result(self) -> dict[str, float]:
        """The metrics of everything added so far, as Python floats."""
