"""Evaluations that `fit` runs every so many steps beside its own: zero-shot, transfer, ..."""

import dataclasses
import re
from collections.abc import Callable, Sequence

import equinox as eqx
from jax.sharding import Mesh

Evaluate = Callable[[eqx.Module, eqx.nn.State | None, Mesh], dict[str, float]]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class PeriodicEvaluation:
    """An evaluation of the model being trained, run by `fit` every `every` steps and at
    the end, its results logged with the step's record as `<name>_<metric>`.

    For what the task's own evaluation on `eval_batches` does not measure: zero-shot
    classification of a contrastive model (`tasks.ZeroShotClassifier`), a linear probe on
    frozen features, retrieval on another dataset. Its values go to the history `fit`
    returns, `metrics.jsonl` and TensorBoard, like the `eval_` metrics; its time is left
    out of the training throughput.

    ```python
    zero_shot = loops.PeriodicEvaluation(
        "zero_shot", every=100,
        evaluate=lambda model, model_state, mesh: loops.evaluate(
            tasks.ZeroShotClassifier(model, class_tokens), tasks.ClassificationTask(),
            dataset.test_iter, mesh=mesh,
        ),
    )
    loops.fit(model, task, batches, ..., evaluations=[zero_shot])  # logs zero_shot_accuracy, ...
    ```

    Fields:
        name: the prefix of the logged metrics: letters, digits and underscores,
            starting with a letter.
        every: run every this many steps (a multiple of `fit`'s `steps_per_dispatch`)
            and at the last step; `None`: at the last step only.
        evaluate: `evaluate(model, model_state, mesh) -> {metric: value}`, Python
            floats. It receives the current parameters as `fit` holds them (on `mesh`,
            replicated or sharded; `loops.evaluate(..., mesh=mesh)` keeps them there),
            the model's `eqx.nn.State` (or `None`) and the run's mesh. It must not
            keep or donate the arrays: training goes on with them.
    """

    name: str
    every: int | None
    evaluate: Evaluate

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                "`name` of a `PeriodicEvaluation` must be letters, digits and underscores, "
                f"starting with a letter (it prefixes the logged metrics). Received: {self.name!r}."
            )
        every = self.every
        if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
            raise ValueError(
                f"`every` of the `PeriodicEvaluation` {self.name!r} must be a positive integer "
                f"or None (at the last step only). Received: {every!r}."
            )
        if not callable(self.evaluate):
            raise ValueError(
                f"`evaluate` of the `PeriodicEvaluation` {self.name!r} must be a function "
                f"`(model, model_state, mesh) -> dict`. Received: {type(self.evaluate).__name__}."
            )

    def run(self, model: eqx.Module, model_state: eqx.nn.State | None, mesh: Mesh) -> dict[str, float]:
        """`evaluate`'s results, each name prefixed with `name_`.

        Raises:
            ValueError: `evaluate` returned something other than a dict of numbers.
        """
        results = self.evaluate(model, model_state, mesh)
        if not isinstance(results, dict) or not all(isinstance(k, str) for k in results):
            raise ValueError(
                f"`evaluate` of the `PeriodicEvaluation` {self.name!r} must return a dict "
                f"`{{metric name: value}}`. Received: {type(results).__name__}."
            )
        try:
            return {f"{self.name}_{metric}": float(value) for metric, value in results.items()}
        except (TypeError, ValueError):
            kinds = {metric: type(value).__name__ for metric, value in results.items()}
            raise ValueError(
                f"`evaluate` of the `PeriodicEvaluation` {self.name!r} must return scalar "
                f"values. Received: {kinds}."
            ) from None


def check_evaluations(evaluations: Sequence[PeriodicEvaluation], steps_per_dispatch: int) -> None:
    """Raises unless `evaluations` are `PeriodicEvaluation`s with distinct names, each due
    at the end of a dispatch."""
    names = set()
    for index, evaluation in enumerate(evaluations):
        if not isinstance(evaluation, PeriodicEvaluation):
            raise ValueError(
                f"`evaluations[{index}]` must be a `loops.PeriodicEvaluation`. "
                f"Received: {type(evaluation).__name__}."
            )
        if evaluation.name in names or evaluation.name == "eval":
            raise ValueError(
                "Each of `evaluations` must have its own name, other than 'eval' (the prefix "
                f"of the task's evaluation). Received: {evaluation.name!r} twice or reserved."
            )
        names.add(evaluation.name)
        if evaluation.every is not None and evaluation.every % steps_per_dispatch:
            raise ValueError(
                f"`every` of the `PeriodicEvaluation` {evaluation.name!r} must be a multiple "
                f"of `steps_per_dispatch` (={steps_per_dispatch}), so that it falls at the "
                f"end of a dispatch. Received: every={evaluation.every}."
            )
