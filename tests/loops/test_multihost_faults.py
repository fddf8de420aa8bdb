"""Two `jax.distributed` processes on 127.0.0.1, with real signals: a preempted (or
Ctrl-C'd) process makes both save the same step and stop, and the resumed run is bitwise
the uninterrupted one; when a peer dies, stops or stalls, the other exits within a
minute, naming it, and no process is left behind.

The slow tests (a stopped peer, a dead coordinator) run only with SCENIC_EQX_SLOW_TESTS=1.
"""

import os
import signal
import time

import numpy as np
import pytest
from worker_process import WorkerProcess, free_port, load_params


def slow(test):
    """Marks `test` slow (`-m slow` selects it) and skips it unless SCENIC_EQX_SLOW_TESTS=1."""
    run = os.environ.get("SCENIC_EQX_SLOW_TESTS") == "1"
    skip = pytest.mark.skipif(not run, reason="slow: set SCENIC_EQX_SLOW_TESTS=1")
    return pytest.mark.slow(skip(test))


def start_cluster(workdir, *args) -> list[WorkerProcess]:
    port = free_port()
    return [
        WorkerProcess(workdir, "--num_processes", 2, "--process_id", i, "--port", port, "--devices", 1, *args)
        for i in range(2)
    ]


def test_sigterm_to_one_process_stops_both_at_the_same_saved_step(tmp_path):
    args = ("--num_steps", 24, "--checkpoint_every", 8, "--step_sleep", 0.05)
    reference = start_cluster(tmp_path / "uninterrupted", *args)
    assert [w.wait() for w in reference] == [0, 0], reference[0].output[-3000:]

    workdir = tmp_path / "preempted"
    cluster = start_cluster(workdir, *args)
    assert cluster[1].wait_for("step 5"), cluster[1].output[-3000:]
    cluster[1].signal(signal.SIGTERM)  # JAX's notifier tells process 0 too
    assert [w.wait() for w in cluster] == [143, 143], cluster[0].output[-3000:]
    stopped = {w.preempted_step() for w in cluster}
    assert len(stopped) == 1 and 5 <= (step := stopped.pop()) < 24
    assert all(max(w.steps) == step for w in cluster)  # no process went further
    assert str(step) in os.listdir(workdir / "checkpoints")

    resumed = start_cluster(workdir, *args)
    assert [w.wait() for w in resumed] == [0, 0], resumed[0].output[-3000:]
    assert all(w.steps == list(range(step + 1, 25)) for w in resumed)
    for a, b in zip(load_params(workdir), load_params(tmp_path / "uninterrupted"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_ctrl_c_on_one_process_stops_both_at_the_same_saved_step(tmp_path):
    cluster = start_cluster(tmp_path, "--num_steps", 400, "--checkpoint_every", 100, "--step_sleep", 0.05)
    assert cluster[1].wait_for("step 5"), cluster[1].output[-3000:]
    cluster[1].signal(signal.SIGINT)
    assert cluster[0].wait() == 143, cluster[0].output[-3000:]
    assert cluster[1].wait() == -signal.SIGINT  # an uncaught KeyboardInterrupt
    step = cluster[0].preempted_step()
    assert f"KeyboardInterrupt: Interrupted after step {step} (saved)." in cluster[1].output
    assert max(cluster[0].steps) == max(cluster[1].steps) == step
    assert os.listdir(tmp_path / "checkpoints") == [str(step)]


def _lose_a_peer(
    tmp_path, victim: int, signum: int | None, *extra
) -> tuple[WorkerProcess, float, WorkerProcess]:
    """Starts a long two-process run, sends `signum` (if any) to process `victim` after
    its step 5; returns the other process once it has exited, how long that took, and
    the victim."""
    cluster = start_cluster(
        tmp_path, "--num_steps", 400, "--checkpoint_every", 100, "--step_sleep", 0.05,
        "--heartbeat_timeout", 15, "--step_timeout", 10, *extra,
    )  # fmt: skip
    assert cluster[victim].wait_for("step 5"), cluster[victim].output[-3000:]
    start = time.monotonic()
    if signum is not None:
        cluster[victim].signal(signum)
    survivor = cluster[1 - victim]
    survivor.wait(timeout=90)
    return survivor, time.monotonic() - start, cluster[victim]


def test_a_killed_peer_stops_the_other_process_within_a_minute(tmp_path):
    survivor, seconds, victim = _lose_a_peer(tmp_path, 1, signal.SIGKILL)
    print(f"survivor exited {seconds:.1f} s after its peer was killed (code {survivor.process.returncode})")
    assert survivor.process.returncode != 0 and seconds < 60
    assert "Lost: process 1 is not responding" in survivor.output, survivor.output[-3000:]
    assert victim.wait() == -signal.SIGKILL


def test_a_stalled_peer_stops_every_process_within_a_minute(tmp_path):
    # Process 1 sleeps in Python after step 5: alive, heartbeating, never joining step 6.
    survivor, seconds, victim = _lose_a_peer(tmp_path, 1, None, "--stall_process", 1, "--stall_at", 5)
    print(f"survivor exited {seconds:.1f} s after its peer stalled (code {survivor.process.returncode})")
    assert survivor.process.returncode == 124 and seconds < 60
    assert "process 0 of 2 made no progress" in survivor.output
    assert "Lost: process 1 is alive but behind, at step 5" in survivor.output, survivor.output[-3000:]
    assert victim.wait(timeout=60) == 124  # the stalled process's own watchdog ends it too
    assert "Lost: process 1 (this process) is alive but behind" in victim.output


@slow
def test_a_stopped_peer_stops_the_other_process_within_a_minute(tmp_path):
    # The watchdog acts well before JAX's heartbeats would (they name the process too).
    timeouts = ("--heartbeat_timeout", 60, "--step_timeout", 5)
    survivor, seconds, victim = _lose_a_peer(tmp_path, 1, signal.SIGSTOP, *timeouts)
    print(f"survivor exited {seconds:.1f} s after its peer was stopped (code {survivor.process.returncode})")
    assert survivor.process.returncode != 0 and seconds < 60
    assert "Lost: process 1 is not responding" in survivor.output, survivor.output[-3000:]
    victim.signal(signal.SIGCONT)  # woken up, it finds its cluster gone and exits too
    assert victim.wait(timeout=60) != 0


@slow
def test_a_killed_coordinator_stops_the_other_process_at_once(tmp_path):
    # Process 0 runs JAX's coordination service: without it the others abort at once,
    # with JAX's own message (which names the service, not the process).
    survivor, seconds, victim = _lose_a_peer(tmp_path, 0, signal.SIGKILL)
    print(
        f"survivor exited {seconds:.1f} s after the coordinator was killed (code {survivor.process.returncode})"
    )
    assert survivor.process.returncode != 0 and seconds < 60
    assert "JAX distributed service detected fatal errors" in survivor.output, survivor.output[-3000:]
    assert victim.wait() == -signal.SIGKILL
