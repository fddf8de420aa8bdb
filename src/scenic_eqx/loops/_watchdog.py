"""A step watchdog: a process that makes no progress for too long exits instead of waiting forever.

A peer that is alive but stuck (a data loader that hangs, a deadlock in Python, a host
paused by the operating system) leaves every other process of a multi-process run
inside a collective that never completes; JAX's heartbeats only catch peers that stop
heartbeating. The watchdog is a thread that the training loop feeds at every unit of
progress (a dispatch of steps, an evaluation batch, a checkpoint). When none comes
within the timeout it prints which process it is and what the loop was waiting for,
every thread's Python stack and (on several processes) which peer is lost, and ends
the process with `os._exit`: no `finally` block or exit handler could be trusted not
to wait on the lost peer too.
"""

import contextlib
import faulthandler
import math
import os
import threading
import time
from collections.abc import Iterator

from ._progress_board import ProgressBoard

# The code `timeout(1)` exits with when its command runs too long.
WATCHDOG_EXIT_CODE = 124
_STDERR = 2


class StepWatchdog:
    """Ends the process when the training loop reports no progress for `timeout` seconds.

    Arguments:
        timeout: the longest time, in seconds, between two calls to `beat`; `None` or
            `math.inf` watches nothing (every method is then a no-op).
        process_index: this process's index, for the message.
        process_count: the number of processes, for the message.
        board: the processes' shared progress, to name a lost peer; or `None`.

    Use as a context manager: the thread runs inside the `with` block. `beat(activity)`
    says that the loop made progress and is now doing `activity` (e.g. `"step 7"`),
    which the message names if it never finishes. Inside `paused()` (compilation, which
    involves no other process) the clock stops.
    """

    def __init__(
        self,
        timeout: float | None,
        *,
        process_index: int = 0,
        process_count: int = 1,
        board: ProgressBoard | None = None,
    ):
        if timeout is not None and not timeout > 0:
            raise ValueError(f"`step_timeout_seconds` must be a positive number. Received: {timeout!r}.")
        self.timeout = None if timeout is None or math.isinf(timeout) else float(timeout)
        self._where = f"process {process_index} of {process_count}" if process_count > 1 else "this process"
        self._board = board
        self._activity = "starting"
        self._last_beat = time.monotonic()
        self._paused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="scenic_eqx-watchdog")

    def __enter__(self) -> "StepWatchdog":
        self._last_beat = time.monotonic()
        if self.timeout is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def beat(self, activity: str) -> None:
        """Progress: the loop finished what it was doing and now does `activity`."""
        self._activity = activity
        self._last_beat = time.monotonic()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The clock stops inside the block (local work that cannot wait on a peer)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1
            self._last_beat = time.monotonic()

    def _watch(self) -> None:
        poll = min(1.0, self.timeout / 10)
        while not self._stop.wait(poll):
            if not self._paused and time.monotonic() - self._last_beat > self.timeout:
                self._fire()

    def _fire(self) -> None:
        waited = time.monotonic() - self._last_beat
        _write(
            f"\nscenic_eqx watchdog: {self._where} made no progress for {waited:.1f} s "
            f"(step_timeout_seconds={self.timeout:g}) while doing: {self._activity}.\n"
            f"Python stacks of its threads:\n"
        )
        faulthandler.dump_traceback(file=_STDERR, all_threads=True)
        if self._board is not None:
            _write(self._board.report() + "\n")
        _write(f"scenic_eqx watchdog: {self._where} exits with code {WATCHDOG_EXIT_CODE}.\n")
        os._exit(WATCHDOG_EXIT_CODE)


def _write(text: str) -> None:
    # The main thread may be stuck holding `sys.stderr`'s lock: write to the descriptor.
    os.write(_STDERR, text.encode())
