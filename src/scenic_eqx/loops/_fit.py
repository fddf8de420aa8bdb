"""`fit`: the training loop — steps, logging, evaluation and resumable checkpoints."""

import itertools
import os
import time
from collections.abc import Callable, Iterable, Sequence

import equinox as eqx
import jax
import optax
from jax.sharding import Mesh
from jaxtyping import PRNGKeyArray

from ..tasks import AbstractTask
from ._checkpoint import Checkpointer
from ._evaluate import evaluate_on_mesh
from ._flat_step import FlatTrainStep, zero_sums
from ._logging import RunLogger
from ._sharding import data_mesh, host_batch, replicate
from ._steps import make_train_step
from ._train_state import TrainState, init_train_state, partition_trainable

History = list[dict[str, int | float]]
Callback = Callable[[int, dict[str, float], TrainState], None]


def _check_positive(name: str, value: int | None, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` (={value!r}) must be a positive integer.")


def count_parameters(model: eqx.Module) -> int:
    """Number of scalars in the model's trainable arrays (BatchNorm statistics excluded)."""
    return sum(x.size for x in jax.tree.leaves(partition_trainable(model)[0]))


def fit(
    model: eqx.Module,
    task: AbstractTask,
    train_batches: Iterable[dict],
    *,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    key: PRNGKeyArray,
    model_state: eqx.nn.State | None = None,
    eval_batches: Iterable[dict] | Callable[[], Iterable[dict]] | None = None,
    eval_every: int | None = None,
    log_every: int = 50,
    checkpoint_every: int | None = None,
    workdir: str | os.PathLike | None = None,
    mesh: Mesh | None = None,
    callbacks: Sequence[Callback] = (),
    schedule: optax.Schedule | None = None,
    max_checkpoints_to_keep: int = 3,
    progress: bool = True,
) -> tuple[TrainState, History]:
    """Trains `model` on `task` for `num_steps` optimizer steps, data-parallel over `mesh`.

    With a `workdir`, checkpoints go to `workdir/checkpoints` every `checkpoint_every`
    steps and at the end, and a later call on the same `workdir` resumes from the latest
    one: it skips the batches already consumed, so with a deterministic `train_batches`
    the resumed run reproduces the uninterrupted one (bitwise on CPU). Step `i` draws its
    randomness from `jax.random.fold_in(key, i)`.

    Arguments:
        model: a one-example model (see `apply_model` for the calling convention).
        task: supplies the loss and the `(value_sum, normalizer)` metrics.
        train_batches: this host's batches: any iterable of batch dicts (`inputs`,
            labels, `batch_mask`), at least `num_steps` long; yields the same sequence
            on every run.
        optimizer: any optax transformation (`optax.adamw(schedule)`, ...).
        num_steps: the total number of optimizer steps.
        key: the run's PRNG key (dropout, stochastic depth).
        model_state: the model's `eqx.nn.State`; built from the model when `None`.
        eval_batches: an iterable of eval batches (re-iterated at each evaluation) or a
            zero-argument callable returning one.
        eval_every: evaluate every this many steps (and at the end).
        log_every: log training metrics, averaged over the steps since the last log,
            every this many steps (and at the end).
        checkpoint_every: save a checkpoint every this many steps (needs `workdir`).
        workdir: where checkpoints, `metrics.jsonl` and TensorBoard events go.
        mesh: the device mesh (default: every device, on a `"data"` axis).
        callbacks: functions `callback(step, record, state)` called after each record.
        schedule: the learning-rate schedule, to log `learning_rate`.
        max_checkpoints_to_keep: how many of the latest checkpoints to keep.
        progress: show a progress bar.

    Returns:
        `(state, history)`: the final `TrainState` and one dict per record (`step`, the
        training metrics, `examples_per_sec`, `learning_rate`, and `eval_<name>` metrics
        at evaluation steps).

    Raises:
        FloatingPointError: the loss stopped being finite; the message names the first
            such step. No checkpoint is written after it, so the last good one is kept.
    """
    _check_positive("num_steps", num_steps, optional=False)
    _check_positive("log_every", log_every, optional=False)
    _check_positive("eval_every", eval_every)
    _check_positive("checkpoint_every", checkpoint_every)
    if eval_every is not None and eval_batches is None:
        raise ValueError(f"`eval_every` (={eval_every}) needs `eval_batches`, which is None.")
    if checkpoint_every is not None and workdir is None:
        raise ValueError(f"`checkpoint_every` (={checkpoint_every}) needs a `workdir`, which is None.")

    mesh = data_mesh() if mesh is None else mesh
    train_step = make_train_step(task, optimizer)
    batches = iter(train_batches)
    first_batch = next(batches, None)
    if first_batch is None:
        raise ValueError("`train_batches` yielded no batch.")
    first_batch = host_batch(first_batch, mesh)
    batch_size = len(jax.tree.leaves(first_batch)[0])

    state = replicate(init_train_state(model, optimizer, key=key, model_state=model_state), mesh)
    sums = replicate(zero_sums(train_step, state, first_batch), mesh)
    checkpointer = None
    if workdir is not None:
        checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=max_checkpoints_to_keep)
        if checkpointer.latest_step() is not None:
            restored = checkpointer.restore(train_state=state, metric_sums=sums)
            state, sums = restored["train_state"], restored["metric_sums"]
    start_step = int(state.step)
    if start_step:
        # Resuming: the first `start_step` batches were consumed before the checkpoint.
        batches = itertools.islice(itertools.chain([first_batch], batches), start_step, None)
        batches = (host_batch(b, mesh) for b in batches)
    else:
        batches = itertools.chain([first_batch], (host_batch(b, mesh) for b in batches))

    step_fn = FlatTrainStep(train_step, state, sums, mesh)
    logger = RunLogger(
        workdir,
        num_steps=num_steps,
        initial_step=start_step,
        enabled=jax.process_index() == 0,
        progress=progress,
    )
    history: History = []
    if start_step == 0:
        logger.write(0, {"num_params": float(count_parameters(model))})

    def check_finite():
        bad = int(step_fn.sums["first_nonfinite_step"])
        if bad >= 0:
            raise FloatingPointError(
                f"The training loss is not finite at step {bad}: training stopped; "
                f"the last good checkpoint (if any) is kept."
            )

    try:
        window_start, window_steps = time.perf_counter(), 0
        for step in range(start_step + 1, num_steps + 1):
            batch = next(batches, None)
            if batch is None:
                raise ValueError(f"`train_batches` ran out at step {step} of {num_steps}.")
            step_fn(batch)
            window_steps += 1
            logger.advance()
            record = {}
            if step % log_every == 0 or step == num_steps:
                check_finite()
                record.update(task.summarize(jax.device_get(step_fn.sums["metrics"])))
                elapsed = time.perf_counter() - window_start
                record["examples_per_sec"] = window_steps * batch_size / elapsed
                if schedule is not None:
                    record["learning_rate"] = float(schedule(step - 1))
                step_fn.reset_metrics()
                window_start, window_steps = time.perf_counter(), 0
            pause_start = time.perf_counter()  # eval and checkpoint time is not training time
            if eval_batches is not None and (step == num_steps or (eval_every and step % eval_every == 0)):
                check_finite()
                current = step_fn.state
                results = evaluate_on_mesh(current.model, current.model_state, task, eval_batches, mesh)
                record.update({f"eval_{k}": v for k, v in results.items()})
            if checkpointer is not None and (step == num_steps or (checkpoint_every and step % checkpoint_every == 0)):
                check_finite()
                checkpointer.save(step, train_state=step_fn.state, metric_sums=step_fn.sums)
            if record:
                logger.write(step, record)
                history.append({"step": step, **record})
                for callback in callbacks:
                    callback(step, record, step_fn.state)
            window_start += time.perf_counter() - pause_start
    finally:
        logger.close()
        if checkpointer is not None:
            checkpointer.wait_until_finished()
            checkpointer.close()
    return step_fn.state, history
