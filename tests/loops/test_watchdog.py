"""The step watchdog ends a process that makes no progress, saying where it was stuck; the
progress board names the lost process."""

import re
import subprocess
import sys
import time

import jax
import pytest
from tiny_models import DropoutMLP, run
from worker_process import WorkerProcess

from scenic_eqx.loops._progress_board import describe
from scenic_eqx.loops._watchdog import StepWatchdog


def test_a_stuck_process_exits_with_124_and_its_stacks(tmp_path):
    worker = WorkerProcess(tmp_path, "--step_timeout", 3, "--stall_process", 0, "--stall_at", 3)
    assert worker.wait_for("stalling")
    start = time.monotonic()
    assert worker.wait(timeout=60) == 124
    assert time.monotonic() - start < 30
    assert re.search(
        r"this process made no progress for 3\.\d s \(step_timeout_seconds=3\) while doing: the callbacks after step 3",
        worker.output,
    )
    assert ", line " in worker.output and "in announce" in worker.output  # where it was stuck
    assert "step 4" not in worker.output


def test_steady_progress_does_not_trip_the_watchdog(getkey):
    state, _ = run(DropoutMLP(key=getkey()), 6, log_every=2, step_timeout_seconds=60.0)
    assert int(state.step) == 6


@pytest.mark.parametrize("paused", [True, False])
def test_time_inside_paused_does_not_count(paused):
    # In a subprocess: a watchdog that fires ends its process.
    wait = "with watchdog.paused():\n        time.sleep(1.0)" if paused else "time.sleep(1.0)"
    script = (
        "import time\nfrom scenic_eqx.loops._watchdog import StepWatchdog\n"
        "with StepWatchdog(0.3) as watchdog:\n"
        "    watchdog.beat('compiling')\n"
        f"    {wait}\n"
        "    watchdog.beat('done')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == (0 if paused else 124), done.stderr
    if not paused:
        message = (
            r"this process made no progress for 0\.\d s \(step_timeout_seconds=0.3\) while doing: compiling"
        )
        assert re.search(message, done.stderr)


@pytest.mark.parametrize("timeout", [0, -1.0, True])
def test_step_timeout_must_be_a_positive_number(timeout, getkey):
    with pytest.raises(
        ValueError, match=rf"`step_timeout_seconds` must be a positive number .*Received: {timeout!r}"
    ):
        run(DropoutMLP(key=getkey()), 2, step_timeout_seconds=timeout)


def test_no_timeout_on_one_process_by_default():
    assert jax.process_count() == 1
    assert StepWatchdog(None).timeout is None and StepWatchdog(float("inf")).timeout is None


def test_the_board_names_a_silent_peer():
    before = {0: (10, 7), 1: (4, 6), 2: (9, 7)}
    after = {0: (12, 7), 1: (4, 6), 2: (11, 7)}
    report = describe(before, after, me=0, count=3)
    assert "process 0: step 7, process 1: step 6, process 2: step 7" in report
    assert "Lost: process 1 is not responding (dead or stopped)." in report
    assert "behind" not in report  # a silent process's step is stale: not evidence


def test_the_board_names_a_process_that_is_behind():
    before = {0: (10, 7), 1: (4, 6)}
    after = {0: (12, 7), 1: (6, 6)}
    assert "Lost: process 1 is alive but behind, at step 6 while another process started step 7" in describe(
        before, after, me=0, count=2
    )
    assert "Lost: process 1 (this process) is alive but behind" in describe(before, after, me=1, count=2)


def test_the_board_names_a_process_that_never_reported():
    report = describe({0: (1, 3)}, {0: (3, 3)}, me=0, count=2)
    assert "process 1: never reported" in report and "Lost: process 1 is not responding" in report


def test_the_board_says_when_nobody_is_lost():
    report = describe({0: (1, 3), 1: (1, 3)}, {0: (3, 3), 1: (2, 3)}, me=0, count=2)
    assert "Every process responds and has started the same step." in report
