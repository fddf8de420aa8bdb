"""`fit`: the training loop — set-up, then steps and the periodic actions that are due."""

import contextlib
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import PRNGKeyArray, PyTree

from ..tasks import AbstractTask
from ._batch_checks import check_batch, examples_per_batch
from ._checkpoint import Checkpointer
from ._divergence import NanDebugger
from ._ema import with_params_ema
from ._fit_actions import FitActions
from ._flat_step import FlatTrainStep, zero_sums
from ._flops import training_flops_per_example
from ._input_position import InputPosition
from ._logging import RunLogger, read_history
from ._peak_flops import peak_flops_per_device as lookup_peak_flops
from ._periodic import run_due
from ._periodic_evaluation import PeriodicEvaluation, check_evaluations
from ._placement import Sharding, init_placed_train_state
from ._precision import Precision, get_precision
from ._resume import start_in_workdir
from ._run_guards import RunGuards
from ._sharding import data_mesh, host_batch, replicate
from ._steps import make_train_step
from ._throughput import Throughput
from ._train_state import TrainState, partition_trainable

History = list[dict[str, int | float]]
Callback = Callable[[int, dict[str, float], TrainState], None]


def _check_positive(name: str, value: int | None, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {value!r}.")


def count_parameters(model: eqx.Module) -> int:
    """Number of scalars in the model's trainable arrays (BatchNorm statistics excluded)."""
    return sum(x.size for x in jax.tree.leaves(partition_trainable(model)[0]))


def _check_arguments(
    num_steps,
    log_every,
    eval_every,
    checkpoint_every,
    eval_batches,
    workdir,
    steps_per_dispatch,
    step_timeout_seconds,
):
    _check_positive("num_steps", num_steps, optional=False)
    _check_positive("log_every", log_every, optional=False)
    _check_positive("eval_every", eval_every)
    _check_positive("checkpoint_every", checkpoint_every)
    _check_positive("steps_per_dispatch", steps_per_dispatch, optional=False)
    if eval_every is not None and eval_batches is None:
        raise ValueError(f"`eval_every` (={eval_every}) needs `eval_batches`. Received: eval_batches=None.")
    if checkpoint_every is not None and workdir is None:
        raise ValueError(
            f"`checkpoint_every` (={checkpoint_every}) needs a `workdir`. Received: workdir=None."
        )
    timeout = step_timeout_seconds
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise ValueError(
            f"`step_timeout_seconds` must be a positive number (math.inf: no timeout) or None. "
            f"Received: {timeout!r}."
        )
    periods = {"log_every": log_every, "eval_every": eval_every, "checkpoint_every": checkpoint_every}
    for name, every in periods.items():
        if every is not None and every % steps_per_dispatch:
            raise ValueError(
                f"`{name}` must be a multiple of `steps_per_dispatch` (={steps_per_dispatch}), "
                f"so that it falls at the end of a dispatch. Received: {name}={every}."
            )


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
    sharding: Sharding = "replicated",
    precision: str | Precision = "float32",
    accumulate_steps: int = 1,
    steps_per_dispatch: int = 1,
    ema_decay: float | None = None,
    peak_flops_per_device: float | None = None,
    step_timeout_seconds: float | int | None = None,
    debug_nans: bool = False,
    async_checkpoints: bool = False,
    evaluations: Sequence[PeriodicEvaluation] = (),
) -> tuple[TrainState, History]:
    """Trains `model` on `task` for `num_steps` optimizer steps, data-parallel over `mesh`.

    With a `workdir`, checkpoints go to `workdir/checkpoints` every `checkpoint_every`
    steps and at the end, and a later call on the same `workdir` resumes from the newest
    intact one. The input continues where it stood: a `train_batches` that saves its
    position (`data.ResumableIterator`, as every `Dataset.train_iter`) restores it from
    `workdir/input_state`; any other iterable is replayed, its consumed batches skipped.
    With a deterministic `train_batches` the resumed run reproduces the uninterrupted
    one (bitwise on CPU). Step `i` draws its randomness from `jax.random.fold_in(key, i)`.

    Resuming (see "Resuming and extending a run" in `docs/fault_tolerance.md`): a resumed
    run says `resumed from step N of M (workdir ...)` on the `scenic_eqx` logger (INFO)
    and on stderr (a fresh start says nothing), and drops from `metrics.jsonl` the
    records an earlier attempt logged after step N, which it logs again: each step is
    recorded once. A run whose newest checkpoint is at `num_steps` is finished: `fit`
    says `run already finished at step N (workdir ...)` and returns that state and the
    history read back from `metrics.jsonl`, without training or evaluating. A larger
    `num_steps` continues a finished (or interrupted) run from its last checkpoint.
    `workdir/run.json` records `num_steps`; the optimizer's learning-rate schedule is
    whatever `optimizer` holds (`fit` cannot see it), so a schedule built from
    `num_steps` (`warmup_cosine_decay`, ...) and rebuilt for another `num_steps` changes
    shape from the resumed step on: `fit` warns `num_steps changed from A to B: the
    learning-rate schedule is rebuilt for B steps and continues from step N`.

    Faults (see `docs/fault_tolerance.md`): on SIGTERM the current step finishes, a
    checkpoint of it is saved and `Preempted` (exit code 143) is raised; on several
    processes every host stops at the same step (JAX's preemption sync point). A first
    Ctrl-C does the same (on every process) and raises `KeyboardInterrupt`. A step whose
    loss or gradient is not finite raises `FloatingPointError`. With a step timeout, a
    process that makes no progress for that long dumps its stacks, names a lost peer and
    exits with code 124.

    Arguments:
        model: a one-example model (see `apply_model` for the calling convention).
        task: supplies the loss and the `(value_sum, normalizer)` metrics.
        train_batches: this host's batches: any iterable of batch dicts (`inputs`,
            labels, `batch_mask`), at least `num_steps` long; yields the same sequence
            on every run.
        optimizer: any optax transformation (`optax.adamw(schedule)`, ...).
        num_steps: the total number of optimizer steps (not below the step of the
            checkpoint in `workdir`, if any).
        key: the run's PRNG key (dropout, stochastic depth).
        model_state: the model's `eqx.nn.State`; built from the model when `None`.
        eval_batches: an iterable of eval batches (re-iterated at each evaluation) or a
            zero-argument callable returning one.
        eval_every: evaluate every this many steps (and at the end).
        log_every: log training metrics, averaged over the steps since the last log,
            every this many steps (and at the end).
        checkpoint_every: save a checkpoint every this many steps (needs `workdir`).
        workdir: where checkpoints, `metrics.jsonl` and TensorBoard events go.
        mesh: the device mesh (default: every device, on a `"data"` axis); it may have a
            `"model"` axis too (`loops.device_mesh`), for tensor-parallel `sharding`.
        callbacks: functions `callback(step, record, state)` called after each record.
        schedule: the learning-rate schedule, to log `learning_rate` (the optimizer's
            own schedule is what trains; pass the same one).
        max_checkpoints_to_keep: how many of the latest checkpoints to keep.
        progress: show a progress bar (with the time left).
        sharding: how parameters and optimizer state are laid out on `mesh`:
            `"replicated"` (a full copy on every device), `"fsdp"` (large arrays split
            over the `"data"` axis), `"megatron"` (attention heads and MLP hidden units
            split over the `"model"` axis) or a sequence of `(path pattern, spec)` rules
            (see `loops.parameter_shardings`). The result does not depend on it.
        precision: `"float32"` or `"bfloat16"` (bfloat16 compute; parameters, gradients,
            optimizer state, losses and checkpoints in float32), or a `Precision`.
        accumulate_steps: split each batch into this many micro-batches and accumulate
            their gradients into one update (see `loops.accumulate_gradients`).
        steps_per_dispatch: run this many steps per call to the devices (`lax.scan`
            over stacked batches); `log_every`, `eval_every` and `checkpoint_every`
            must be multiples of it.
        ema_decay: keep an exponential moving average of the parameters in the
            optimizer state (float32, sharded and checkpointed with it) and evaluate it
            beside the parameters (`eval_ema_<name>`); `loops.ema_model(state)` gives it.
        peak_flops_per_device: the chip's peak FLOP/s for the `mfu` figure; by default
            looked up from the device kind (`loops.peak_flops_per_device`).
        step_timeout_seconds: the longest a dispatch of steps, an evaluation batch or a
            checkpoint save may take (compilation excluded) before the process is taken
            to be stuck and exits (code 124); `None`: 600 s on several processes, no
            timeout on one; `math.inf`: no timeout.
        debug_nans: check every dispatch for a non-finite loss or gradient and name the
            first parameter whose gradient is not finite (keeps a copy of the state and
            waits for each dispatch: slower).
        async_checkpoints: go on training while a checkpoint is written. By default
            training waits until it is on disk, so that a crash loses at most
            `checkpoint_every` steps; asynchronous saves hide the writing time but a
            crash during one loses it too (up to `2 * checkpoint_every - 1` steps).
        evaluations: further evaluations (`loops.PeriodicEvaluation`: zero-shot,
            transfer, ...), each run every its own number of steps and at the end, its
            results recorded as `<name>_<metric>`.

    Returns:
        `(state, history)`: the final `TrainState` (float32 parameters whatever the
        `precision`) and one dict per record (`step`, the training metrics,
        `examples_per_sec`, `examples_per_sec_per_device`, `mfu` when the FLOPs and the
        chip's peak are known, `learning_rate`, `eval_<name>` metrics at evaluation
        steps and `<evaluation>_<name>` ones at those of `evaluations`). The first
        record also holds `compile_seconds` of the step. A resumed run's history starts
        after the restored step; a finished run's is every record of
        `workdir/metrics.jsonl` (`[]` on a process that cannot read that file).

    Raises:
        ValueError: the checkpoint in `workdir` was written by another model, optimizer
            or precision (the message names the checkpoint and the first array that
            differs), or `num_steps` is below its step.
        FloatingPointError: the loss or a gradient stopped being finite; the message
            names the first such step. No checkpoint is written after it, so the last
            good one is kept.
        Preempted: SIGTERM (a `SystemExit` with code 143), after saving the step reached.
        KeyboardInterrupt: Ctrl-C, after saving the step reached (with a `workdir`).
    """
    _check_arguments(
        num_steps, log_every, eval_every, checkpoint_every, eval_batches, workdir, steps_per_dispatch,
        step_timeout_seconds,
    )  # fmt: skip
    evaluations = tuple(evaluations)
    check_evaluations(evaluations, steps_per_dispatch)
    precision = get_precision(precision)
    mesh = data_mesh() if mesh is None else mesh
    optimizer = with_params_ema(optimizer, ema_decay)

    def make_step(optimizer):
        return make_train_step(task, optimizer, precision=precision, accumulate_steps=accumulate_steps)

    train_step = make_step(optimizer)

    batches = iter(train_batches)
    first_batch = next(batches, None)
    if first_batch is None:
        raise ValueError("`train_batches` must yield at least one batch. Received: an empty iterable.")
    check_batch(first_batch, where="The first batch of `train_batches`", required=("inputs",))
    batches = itertools.chain([first_batch], batches)
    first_batch = host_batch(first_batch, mesh)
    batch_size = examples_per_batch(first_batch)

    state, replicated_paths = init_placed_train_state(
        model, optimizer, key=key, model_state=model_state, mesh=mesh, sharding=sharding
    )
    sums = replicate(zero_sums(train_step, state, first_batch), mesh)
    checkpointer = None
    if workdir is not None:
        checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=max_checkpoints_to_keep)
        try:
            # The newest checkpoint that verifies; damaged ones are set aside with a warning.
            restored_step, restored = checkpointer.restore_latest_intact(train_state=state, metric_sums=sums)
            finished = start_in_workdir(
                workdir, restored_step=restored_step, num_steps=num_steps,
                is_main_process=jax.process_index() == 0,
            )  # fmt: skip
        except BaseException:
            checkpointer.close()
            raise
        if restored is not None:
            state, sums = restored["train_state"], restored["metric_sums"]
        if finished:
            checkpointer.close()
            return state, read_history(workdir, num_steps)
    start_step = int(state.step)
    input_position = InputPosition(train_batches, workdir)
    if start_step and input_position.restore(start_step):
        batches = iter(train_batches)  # at batch `start_step + 1`, whatever was peeked
    else:
        # Replay: the first `start_step` batches were consumed before the checkpoint.
        batches = itertools.islice(batches, start_step, None)

    step_fn = FlatTrainStep(train_step, state, sums, mesh)
    logger = RunLogger(
        workdir, num_steps=num_steps, initial_step=start_step,
        enabled=jax.process_index() == 0, progress=progress,
    )  # fmt: skip
    flops_per_example = training_flops_per_example(model, first_batch)
    throughput = Throughput(
        batch_size, mesh.devices.size,
        flops_per_step=None if flops_per_example is None else flops_per_example * batch_size,
        peak_flops_per_device=peak_flops_per_device or lookup_peak_flops(mesh.devices.flat[0]),
    )  # fmt: skip
    if start_step == 0:
        first = {"num_params": float(count_parameters(model))}
        if throughput.flops_per_step is not None:
            first["flops_per_step"] = float(throughput.flops_per_step)
        if replicated_paths:
            first["num_replicated_arrays"] = float(len(replicated_paths))
        logger.write(0, first)

    guards = RunGuards(step_timeout_seconds, handle_sigint=checkpointer is not None)
    actions = FitActions(
        step_fn, task, throughput, mesh, precision, schedule, eval_batches,
        evaluate_ema=ema_decay is not None, checkpointer=checkpointer, watchdog=guards.watchdog,
        async_checkpoints=async_checkpoints, input_position=input_position, evaluations=evaluations,
    )  # fmt: skip
    periodic = actions.periodic(log_every, eval_every, checkpoint_every)
    debugger = NanDebugger(make_step, optimizer, mesh) if debug_nans else None

    history: History = []
    with guards:
        try:
            for dispatch, (count, last) in enumerate(
                _dispatches(start_step, num_steps, steps_per_dispatch), 1
            ):
                guards.beat(f"loading the batches of step {last}")
                taken, placed = _next_batches(batches, count, last, num_steps, mesh)
                guards.started(last)
                # The first dispatch of each length compiles: the watchdog does not time it.
                compiling = contextlib.nullcontext() if step_fn.is_compiled(count) else guards.paused()
                with compiling:
                    if debugger is None:
                        compile_seconds = step_fn(placed, count)
                    else:
                        compile_seconds = debugger.run(step_fn, placed, count, taken, last)
                throughput.exclude(compile_seconds)
                throughput.add_steps(count)
                logger.advance(count)
                record = run_due(periodic, last, num_steps)
                if record:
                    if not history:  # the run's first record
                        record["compile_seconds"] = sum(step_fn.compile_seconds.values())
                    logger.write(last, record)
                    history.append({"step": last, **record})
                    guards.beat(f"the callbacks after step {last}")
                    for callback in callbacks:
                        callback(last, record, step_fn.state)
                guards.stop_if_requested(dispatch, last, actions.save_now)
        except BaseException as error:
            guards.explain(error)
            raise
        finally:
            guards.beat("waiting for checkpoint saves to finish")
            logger.close()
            if checkpointer is not None:
                checkpointer.close()  # waits for the last save; raises if it failed
    return step_fn.state, history


def _dispatches(start_step: int, num_steps: int, steps_per_dispatch: int) -> Iterator[tuple[int, int]]:
    """`(steps, last_step)` of each dispatch: runs of `steps_per_dispatch` steps ending at
    its multiples, shorter at the end or after resuming from an unaligned step."""
    step = start_step
    while step < num_steps:
        last = min((step // steps_per_dispatch + 1) * steps_per_dispatch, num_steps)
        yield last - step, last
        step = last


def _next_batches(
    batches: Iterator[PyTree], count: int, last: int, num_steps: int, mesh: Mesh
) -> tuple[list[PyTree], PyTree]:
    """The next `count` host batches, and them ready for the step: stacked along a new
    leading axis when `count > 1`."""
    taken = list(itertools.islice(batches, count))
    if len(taken) < count:
        raise ValueError(f"`train_batches` ran out at step {last - count + len(taken) + 1} of {num_steps}.")
    for step, batch in enumerate(taken, last - count + 1):
        check_batch(batch, where=f"The batch of step {step} from `train_batches`", required=("inputs",))
    if count == 1:
        return taken, host_batch(taken[0], mesh)
    stack = lambda *xs: jnp.stack(xs) if isinstance(xs[0], jax.Array) else np.stack(xs)  # noqa: E731
    return taken, host_batch(jax.tree.map(stack, *taken), mesh, stacked=True)
