"""The periodic actions of `fit`: log training metrics, evaluate, checkpoint."""

from collections.abc import Callable, Iterable, Iterator, Sequence

import jax
import optax
from jax.sharding import Mesh

from ..tasks import AbstractTask
from ._checkpoint import Checkpointer
from ._divergence import nonfinite_message
from ._ema import ema_model
from ._evaluate import evaluate_on_mesh
from ._flat_step import FlatTrainStep
from ._input_position import InputPosition
from ._periodic import Periodic
from ._periodic_evaluation import PeriodicEvaluation
from ._precision import Precision
from ._throughput import Throughput
from ._watchdog import StepWatchdog


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
        watchdog: told of the progress of evaluations (batch by batch) and saves.
        async_checkpoints: let training go on while a checkpoint is written, instead
            of waiting until it is on disk.
        input_position: saves the training input's position with each checkpoint.
        evaluations: further evaluations of the model, each with its own period.
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
        watchdog: StepWatchdog,
        async_checkpoints: bool = False,
        input_position: InputPosition | None = None,
        evaluations: Sequence[PeriodicEvaluation] = (),
    ):
        self.step_fn, self.task, self.throughput = step_fn, task, throughput
        self.mesh, self.precision, self.schedule = mesh, precision, schedule
        self.eval_batches, self.evaluate_ema = eval_batches, evaluate_ema
        self.checkpointer = checkpointer
        self.watchdog = watchdog
        self.async_checkpoints = async_checkpoints
        self.input_position = input_position or InputPosition((), None)
        self.saved_step: int | None = None
        self.evaluations = evaluations

    def periodic(
        self, log_every: int, eval_every: int | None, checkpoint_every: int | None
    ) -> list[Periodic]:
        """The actions to run, in order, with their periods."""
        actions = [Periodic("log", log_every, self.log)]
        if self.eval_batches is not None:
            actions.append(Periodic("evaluate", eval_every, self._paused("evaluation", self.evaluate)))
        for evaluation in self.evaluations:
            run = self._paused(f"evaluation {evaluation.name!r}", self._periodic_evaluation(evaluation))
            actions.append(Periodic(evaluation.name, evaluation.every, run))
        if self.checkpointer is not None:
            actions.append(
                Periodic("checkpoint", checkpoint_every, self._paused("checkpoint", self.checkpoint))
            )
        return actions

    def check_finite(self) -> None:
        """Raises if a step's loss or gradient was not finite (reading the sums waits
        for the steps)."""
        bad = int(self.step_fn.sums["first_nonfinite_step"])
        if bad >= 0:
            raise FloatingPointError(nonfinite_message(bad))

    def log(self, step: int) -> dict[str, float]:
        """Training metrics averaged since the last log, speed and learning rate."""
        self.check_finite()
        if self.checkpointer is not None:
            self.checkpointer.check_for_errors()  # a background save that failed
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
            batches = self._watched_eval_batches(f"evaluation ({prefix}) at step {step}")
            results = evaluate_on_mesh(
                model, state.model_state, self.task, batches, self.mesh, precision=self.precision
            )
            record.update({f"{prefix}_{name}": value for name, value in results.items()})
        return record

    def _periodic_evaluation(self, evaluation: PeriodicEvaluation) -> Callable[[int], dict[str, float]]:
        """`evaluation` of the current parameters, as an action of `periodic`."""

        def run(step: int) -> dict[str, float]:
            self.check_finite()
            state = self.step_fn.state
            return evaluation.run(state.model, state.model_state, self.mesh)

        return run

    def _watched_eval_batches(self, activity: str) -> Iterator[dict]:
        """The evaluation batches, telling the watchdog of each one."""
        batches = self.eval_batches
        if callable(batches) and not isinstance(batches, Iterable):
            batches = batches()
        for index, batch in enumerate(batches):
            self.watchdog.beat(f"{activity}, batch {index}")
            yield batch

    def checkpoint(self, step: int) -> dict[str, float]:
        """Saves the state and the metric sums as checkpoint `step` (or starts to, with
        `async_checkpoints`: a crash before it is written then loses it)."""
        self.check_finite()
        # The input's position first: a checkpoint never exists without it.
        self.input_position.save(step)
        self.checkpointer.save(step, train_state=self.step_fn.state, metric_sums=self.step_fn.sums)
        if not self.async_checkpoints:
            self.checkpointer.wait_until_finished()
        self.input_position.keep_only([*self.checkpointer.all_steps(), step])
        self.saved_step = step
        return {}

    def save_now(self, step: int) -> bool:
        """Saves checkpoint `step` unless it was just saved; whether there is one."""
        if self.checkpointer is None:
            return False
        if self.saved_step != step:
            self.watchdog.beat(f"checkpoint at step {step}")
            self.checkpoint(step)
        return True

    def _paused(self, name: str, action: Callable[[int], dict]) -> Callable[[int], dict]:
        """`action`, its time left out of the training throughput."""

        def run(step: int) -> dict[str, float]:
            self.watchdog.beat(f"the steps up to {step}")
            jax.block_until_ready(self.step_fn.sums)  # the steps before it are training time
            self.watchdog.beat(f"{name} at step {step}")
            self.throughput.pause()
            try:
                return action(step)
            finally:
                self.throughput.resume()

        return run
