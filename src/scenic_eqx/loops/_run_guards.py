"""What guards a training run against its surroundings: preemption, lost peers, stuck steps.

`fit` drives one `RunGuards` through its loop: `beat` at each unit of progress (the
watchdog's clock), `started(step)` before each dispatch (the progress board),
`stop_if_requested` after it (SIGTERM, Ctrl-C, JAX's preemption sync point), and
`explain(error)` when a step fails on several processes.
"""

import sys
from collections.abc import Callable

import jax

from ._preemption import Preempted, PreemptionWatch, Stop
from ._progress_board import ProgressBoard
from ._watchdog import StepWatchdog

# The step timeout when `step_timeout_seconds=None` on several processes: long enough
# for any step, evaluation batch or save, short of leaving a cluster idle for long.
MULTI_PROCESS_STEP_TIMEOUT = 600.0


class RunGuards:
    """The preemption watch, the step watchdog and (on several processes) the progress
    board of one run, as one context manager.

    Arguments:
        step_timeout_seconds: the watchdog's timeout; `None`: `MULTI_PROCESS_STEP_TIMEOUT`
            on several processes, none on one.
        handle_sigint: whether a first Ctrl-C saves and stops.
    """

    def __init__(self, step_timeout_seconds: float | None, *, handle_sigint: bool):
        index, count = jax.process_index(), jax.process_count()
        self._board = ProgressBoard(index, count) if count > 1 else None
        if step_timeout_seconds is None and count > 1:
            step_timeout_seconds = MULTI_PROCESS_STEP_TIMEOUT
        self.watchdog = StepWatchdog(
            step_timeout_seconds, process_index=index, process_count=count, board=self._board
        )
        self._preemption = PreemptionWatch(handle_sigint=handle_sigint)

    def __enter__(self) -> "RunGuards":
        if self._board is not None:
            self._board.start()
        self.watchdog.__enter__()
        self._preemption.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._preemption.__exit__(*exc)
        self.watchdog.__exit__(*exc)
        if self._board is not None:
            self._board.close()

    def beat(self, activity: str) -> None:
        """Progress: now doing `activity` (named if the watchdog fires)."""
        self.watchdog.beat(activity)

    def paused(self):
        """A block the watchdog does not time (compilation: no peer involved)."""
        return self.watchdog.paused()

    def started(self, step: int) -> None:
        """The dispatch ending at `step` starts."""
        self.watchdog.beat(f"step {step}")
        if self._board is not None:
            self._board.set_step(step)

    def stop_if_requested(self, dispatch: int, step: int, save: Callable[[int], bool]) -> None:
        """After dispatch number `dispatch` (ending at `step`): on a stop request, `save(step)`
        and raise `Preempted` (SIGTERM) or `KeyboardInterrupt` (Ctrl-C)."""
        stop = self._preemption.stop_requested(dispatch)
        if stop is None:
            return
        saved = save(step)
        if stop is Stop.PREEMPTED:
            raise Preempted(step, saved)
        raise KeyboardInterrupt(f"Interrupted after step {step}" + (" (saved)." if saved else "."))

    def explain(self, error: BaseException) -> None:
        """On several processes, says which peers are lost when a step fails: most likely
        a collective failed because one is gone. Errors every process raises alike
        (divergence, preemption) need no such report."""
        if self._board is None or isinstance(error, FloatingPointError | Preempted | KeyboardInterrupt):
            return
        self.beat("reporting the other processes' progress")
        report = self._board.report()
        where = f"process {jax.process_index()}"
        print(f"scenic_eqx: {where} stopped with an error.\n{report}", file=sys.stderr, flush=True)
