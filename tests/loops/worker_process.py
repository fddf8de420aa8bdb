"""`fault_worker.py` as a subprocess whose output a test reads line by line, to signal it
at a chosen step."""

import os
import queue
import socket
import subprocess
import sys
import threading
import time

import numpy as np

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerProcess:
    """`python fault_worker.py WORKDIR *args`, its merged stdout and stderr read by a thread.

    Arguments:
        workdir: the run's workdir.
        args: the worker's other command-line arguments.
    """

    def __init__(self, workdir, *args: str):
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # the worker sets its own
        self.process = subprocess.Popen(
            [sys.executable, WORKER, str(workdir), *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        self._new: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line.rstrip("\n"))
        self.process.stdout.close()
        self._new.put(None)

    def wait_for(self, line: str, timeout: float = 120) -> bool:
        """Waits until the worker prints `line`; `False` if it exits first."""
        return self.wait_until(lambda got: got == line, timeout)

    def wait_for_step(self, step: int, timeout: float = 120) -> bool:
        """Waits until the worker announces `step` or a later one (a resumed run may
        start past it); `False` if it exits first."""
        return self.wait_until(lambda got: got.startswith("step ") and int(got.split()[1]) >= step, timeout)

    def wait_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            got = self._new.get(timeout=max(deadline - time.monotonic(), 0.01))
            if got is None:
                return False
            if predicate(got):
                return True

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 120) -> int:
        """The exit code, once the process has exited and its output is read."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    @property
    def steps(self) -> list[int]:
        """The steps the worker announced."""
        return [int(line.split()[1]) for line in self.lines if line.startswith("step ")]

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def preempted_step(self) -> int | None:
        found = [int(line.split()[1]) for line in self.lines if line.startswith("preempted ")]
        return found[-1] if found else None


def load_params(workdir) -> list[np.ndarray]:
    with np.load(os.path.join(workdir, "params.npz")) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]
