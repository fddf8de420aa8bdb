"""Each process's training progress, shared through the `jax.distributed` coordination service.

When a multi-process run stops, the processes that wait cannot tell by themselves which
peer holds them up: a collective simply never completes. So each process publishes,
about once a second from a background thread, the step it has started and a counter
that advances while it is alive. A process that gives up reads the board twice, a few
seconds apart: a peer whose counter did not move is not responding (dead, or stopped);
a peer that responds but has started an older step is behind (stuck in Python before
the next collective). If the board cannot be read at all, the coordination service, in
process 0, is gone.
"""

import threading
import time
from collections.abc import Callable

_PREFIX = "scenic_eqx/progress/"


def _client():
    """JAX's coordination-service client, or `None` without `jax.distributed`.

    JAX has no public handle on its key-value store; this is the one orbax uses too.
    """
    try:
        from jax._src import distributed
    except ImportError:
        return None
    return getattr(distributed.global_state, "client", None)


def _with_timeout(function: Callable, timeout: float):
    """`function()`, or `TimeoutError` when it takes longer than `timeout` seconds (an RPC
    to a stopped coordinator never returns); the call is left running in a daemon thread."""
    result: list = []

    def call():
        try:
            result.append(("ok", function()))
        except Exception as error:  # noqa: BLE001 (reported, not raised, by the caller)
            result.append(("error", error))

    thread = threading.Thread(target=call, daemon=True, name="scenic_eqx-board-read")
    thread.start()
    thread.join(timeout)
    if not result:
        raise TimeoutError(f"no answer within {timeout:g} s")
    kind, value = result[0]
    if kind == "error":
        raise value
    return value


class ProgressBoard:
    """Publishes this process's progress and tells which peers are lost.

    Arguments:
        process_index: this process's index (`jax.process_index()`).
        process_count: the number of processes (`jax.process_count()`).
        interval: seconds between publications.

    `set_step(step)` (cheap, from the training loop) records the step this process has
    started; `start()` and `close()` run the publishing thread; `report()` describes
    every process's progress and names the lost ones.
    """

    def __init__(self, process_index: int, process_count: int, *, interval: float = 1.0):
        self.process_index, self.process_count = process_index, process_count
        self._interval = interval
        self._step = -1
        self._tick = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish_loop, daemon=True, name="scenic_eqx-board")
        self._client = _client()

    def set_step(self, step: int) -> None:
        self._step = step

    def start(self) -> None:
        if self._client is not None:
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * self._interval)

    def _publish_loop(self) -> None:
        key = f"{_PREFIX}{self.process_index}"
        while True:
            self._tick += 1
            try:
                self._client.key_value_set(key, f"{self._tick} {self._step}", allow_overwrite=True)
            except Exception:  # noqa: BLE001 (the service is gone: `report` will say so)
                return
            if self._stop.wait(self._interval):
                return

    def _read(self, timeout: float) -> dict[int, tuple[int, int]]:
        entries = _with_timeout(lambda: self._client.key_value_dir_get(_PREFIX), timeout)
        board = {}
        for key, value in entries:
            tick, step = value.split()
            board[int(key.rsplit("/", 1)[-1])] = (int(tick), int(step))
        return board

    def report(self, *, wait: float = 2.5, timeout: float = 10.0) -> str:
        """Every process's started step, and which processes are lost.

        Arguments:
            wait: seconds between the two readings of the board.
            timeout: how long to wait for the coordination service to answer.
        """
        if self._client is None:
            return "The other processes' progress is unknown (no `jax.distributed` client)."
        try:
            before = self._read(timeout)
            time.sleep(wait)
            after = self._read(timeout)
        except Exception as error:  # noqa: BLE001
            return (
                f"The coordination service does not answer ({error}): process 0, which "
                f"runs it, is lost (dead or stopped)."
            )
        return describe(before, after, self.process_index, self.process_count)


def describe(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], me: int, count: int
) -> str:
    """The report of two readings of the board (`{process: (tick, step)}`)."""
    silent = [
        p for p in range(count) if p != me and (p not in after or after[p][0] == before.get(p, (None,))[0])
    ]
    steps = {p: after[p][1] for p in after}
    alive = [p for p in steps if p not in silent]
    newest = max((steps[p] for p in alive), default=-1)
    behind = [p for p in alive if steps[p] < newest]
    progress = ", ".join(f"process {p}: {_started(steps.get(p))}" for p in range(count))
    lines = [f"Last step each process reported starting: {progress}."]
    if silent:
        lines.append(f"Lost: {_names(silent, me)} not responding (dead or stopped).")
    if behind:
        lines.append(
            f"Lost: {_names(behind, me)} alive but behind, at step "
            f"{', '.join(str(steps[p]) for p in behind)} while another process started "
            f"step {newest}: stuck before a collective."
        )
    if not silent and not behind:
        lines.append("Every process responds and has started the same step.")
    return "\n".join(lines)


def _started(step: int | None) -> str:
    if step is None:
        return "never reported"
    return "no step yet" if step < 0 else f"step {step}"


def _names(processes: list[int], me: int) -> str:
    """`process 1 is`, `processes 1, 2 are`, with `(this process)` after this one's index."""
    names = [f"{p} (this process)" if p == me else str(p) for p in processes]
    if len(names) == 1:
        return f"process {names[0]} is"
    return f"processes {', '.join(names)} are"
