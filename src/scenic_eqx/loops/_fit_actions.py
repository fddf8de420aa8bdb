"""The periodic actions of `fit`: log training metrics, evaluate, checkpoint."""

from collections.abc import Callable, Iterable

import jax
import optax
from jax.sharding import Mesh

from ..tasks import AbstractTask
from ._checkpoint import Checkpointer
from ._ema import ema_model
from ._evaluate import evaluate_on_mesh
from ._flat_step import FlatTrainStep
from ._periodic import Periodic
from ._precision import Precision
from ._throughput import Throughput


class FitActions:
    """What `fit` does between steps, each action returning the values it records.

    Arguments:
        step_fn: the compiled step, holding the state and the metric sums.
        task: summarises the training metrics and evaluates.
        throughput: the speed figures, paused while evaluating and checkpointing.
        mesh: the device mesh.
        precision: the compute policy of evaluations.
        schedule: the learning-rate schedule to log, or `None`.
        eval_batches: evaluation batches (or a callable returning them), or `None`.
        evaluate_ema: also evaluate the parameter average (`eval_ema_<name>`).
        checkpointer: where checkpoints go, or `None`.
    """

    def __init__(
        self,
        step_fn: FlatTrainStep,
        task: AbstractTask,
        throughput: Throughput,
        mesh: Mesh,
        precision: Precision,
        schedule: optax.Schedule | None,
        eval_batches: Iterable[dict] | Callable[[], Iterable[dict]] | None,
        evaluate_ema: bool,
        checkpointer: Checkpointer | None,
    ):
        self.step_fn, self.task, self.throughput = step_fn, task, throughput
        self.mesh, self.precision, self.schedule = mesh, precision, schedule
        self.eval_batches, self.evaluate_ema = eval_batches, evaluate_ema
        self.checkpointer = checkpointer

    def periodic(self, log_every: int, eval_every: int | None, checkpoint_every: int | None) -> list[Periodic]:
        """The actions to run, in order, with their periods."""
        actions = [Periodic("log", log_every, self.log)]
        if self.eval_batches is not None:
            actions.append(Periodic("evaluate", eval_every, self._paused(self.evaluate)))
        if self.checkpointer is not None:
            actions.append(Periodic("checkpoint", checkpoint_every, self._paused(self.checkpoint)))
        return actions

    def check_finite(self) -> None:
        """Raises if a step's loss was not finite (reading the sums waits for the steps)."""
        bad = int(self.step_fn.sums["first_nonfinite_step"])
        if bad >= 0:
            raise FloatingPointError(
                f"The training loss is not finite at step {bad}: training stopped; "
                f"the last good checkpoint (if any) is kept."
            )

    def log(self, step: int) -> dict[str, float]:
        """Training metrics averaged since the last log, speed and learning rate."""
        self.check_finite()
        record = self.task.summarize(jax.device_get(self.step_fn.sums["metrics"]))
        record.update(self.throughput.record())
        if self.schedule is not None:
            record["learning_rate"] = float(self.schedule(step - 1))
        self.step_fn.reset_metrics()
        return record

    def evaluate(self, step: int) -> dict[str, float]:
        """`eval_<name>` metrics of the parameters (and `eval_ema_<name>` of their average)."""
        self.check_finite()
        state = self.step_fn.state
        models = {"eval": state.model}
        if self.evaluate_ema:
            models["eval_ema"] = ema_model(state)
        record = {}
        for prefix, model in models.items():
            results = evaluate_on_mesh(
                model, state.model_state, self.task, self.eval_batches, self.mesh, precision=self.precision
            )
            record.update({f"{prefix}_{name}": value for name, value in results.items()})
        return record

    def checkpoint(self, step: int) -> dict[str, float]:
        """Starts saving the state and the metric sums as checkpoint `step`."""
        self.check_finite()
        self.checkpointer.save(step, train_state=self.step_fn.state, metric_sums=self.step_fn.sums)
        return {}

    def _paused(self, action: Callable[[int], dict]) -> Callable[[int], dict]:
        """`action`, its time left out of the training throughput."""

        def run(step: int) -> dict[str, float]:
            jax.block_until_ready(self.step_fn.sums)  # the steps before it are training time
            self.throughput.pause()
            try:
                return action(step)
            finally:
                self.throughput.resume()

        return run
