"""Preemption: SIGTERM (and Ctrl-C) end `fit` after the current step, with a checkpoint.

A scheduler that takes a machine back (a preemptible VM, a Kubernetes pod eviction,
SLURM's `--signal`) sends SIGTERM and kills the job a little later. Training should use
that time to save the step it has reached, not lose everything since the last periodic
checkpoint.

- One process (no `jax.distributed`): SIGTERM and SIGINT get handlers, for the duration
  of `fit`'s training loop only, that merely set a flag; the loop reads it after each
  dispatch. Outside it (set-up, the evaluation after `fit`) they keep their usual effect.
- Several processes (`jax.distributed.initialize` was called): JAX installs its own
  SIGTERM notifier, which tells the coordination service, which tells every process;
  the hosts then agree on the next step to stop at (JAX's preemption sync point), so
  every host saves the same step. Its handler is never replaced here. A first Ctrl-C
  is passed on to it as a SIGTERM to this process, so that every process stops at the
  same step too.
"""

import enum
import os
import signal
import threading

import jax

# 128 + SIGTERM, what a shell reports for a process killed by SIGTERM: schedulers and
# wrappers that read exit codes treat a preempted run the same either way.
PREEMPTED_EXIT_CODE = 143


class Preempted(SystemExit):
    """Training stopped on a preemption notice (SIGTERM) after saving the step it reached.

    A `SystemExit` with code 143: uncaught, the process exits with 143, and a restart on
    the same `workdir` resumes from `step`.

    Fields:
        step: the step reached, and saved if `saved`.
        saved: whether a checkpoint of `step` was written (`fit` had a `workdir`).
    """

    def __init__(self, step: int, saved: bool = True):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step = step
        self.saved = saved

    def __str__(self) -> str:
        where = f"saved a checkpoint at step {self.step}" if self.saved else f"stopped at step {self.step}"
        return f"Preempted (SIGTERM): training {where}; exit code {PREEMPTED_EXIT_CODE}."


class Stop(enum.Enum):
    """Why the loop should stop after the current dispatch."""

    PREEMPTED = "SIGTERM"
    INTERRUPTED = "SIGINT"


class PreemptionWatch:
    """Tells the training loop, after each dispatch, whether to save and stop.

    Use as a context manager around the loop; `stop_requested(dispatch)` must be called
    after every dispatch, with consecutive numbers that every host counts alike (JAX's
    sync point is "one past the highest number any host has reached").

    Arguments:
        handle_sigint: whether a first Ctrl-C (one process only) stops after the
            current step with a save, like SIGTERM, and then raises
            `KeyboardInterrupt`; a second Ctrl-C interrupts at once.
    """

    def __init__(self, *, handle_sigint: bool = True):
        self._handle_sigint = handle_sigint
        self._requested: Stop | None = None
        self._previous: dict[int, object] = {}
        self._coordinated = jax.distributed.is_initialized()

    def __enter__(self) -> "PreemptionWatch":
        if threading.current_thread() is not threading.main_thread():
            return self  # Python only lets the main thread set handlers
        if not self._coordinated:
            self._install(signal.SIGTERM, self._on_sigterm)
        if self._handle_sigint and (not self._coordinated or _has_preemption_service()):
            self._install(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _install(self, signum: int, handler) -> None:
        previous = signal.getsignal(signum)
        if previous is None:
            # Set outside Python (e.g. by a C++ library): it could not be restored.
            return
        self._previous[signum] = previous
        signal.signal(signum, handler)

    def _on_sigterm(self, signum, frame) -> None:
        self._requested = Stop.PREEMPTED
        _say("SIGTERM received: training stops after the current step (saved, with a workdir).")

    def _on_sigint(self, signum, frame) -> None:
        if self._requested is not None:
            raise KeyboardInterrupt
        self._requested = Stop.INTERRUPTED
        _say("Ctrl-C: saving a checkpoint after the current step, then stopping "
             "(press Ctrl-C again to stop at once).")  # fmt: skip
        if self._coordinated:
            os.kill(os.getpid(), signal.SIGTERM)  # to JAX's notifier: every process stops

    def stop_requested(self, dispatch: int) -> Stop | None:
        """Whether to stop after dispatch number `dispatch` (1, 2, ... in this run)."""
        if not self._coordinated:
            return self._requested
        if not _reached_sync_point(dispatch):
            return None
        return Stop.INTERRUPTED if self._requested is Stop.INTERRUPTED else Stop.PREEMPTED


def _reached_sync_point(dispatch: int) -> bool:
    from jax.experimental import multihost_utils

    try:
        return multihost_utils.reached_preemption_sync_point(dispatch)
    except RuntimeError:  # JAX's preemption service is switched off: nothing to agree on
        return False


def _has_preemption_service() -> bool:
    """Whether JAX's preemption notifier runs (on by default with `jax.distributed`); only
    then does a SIGTERM to this process stop the run rather than kill it."""
    return bool(jax.config.jax_enable_preemption_service)


def _say(message: str) -> None:
    # A signal handler may run while the main thread holds `sys.stderr`'s lock.
    os.write(2, f"\n{message}\n".encode())
