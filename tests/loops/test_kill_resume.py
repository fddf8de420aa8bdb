"""A training process killed at any moment (SIGKILL: no chance to save), restarted on the
same workdir until it finishes, ends with the parameters of an uninterrupted run,
bitwise, having redone at most `checkpoint_every` steps per kill; a preempted one
(SIGTERM) exits with code 143 and redoes none.

The slow test (at least ten kills, some at random times) runs only with
SCENIC_EQX_SLOW_TESTS=1.
"""

import os
import random
import signal
import time

import numpy as np
import pytest
from worker_process import WorkerProcess, load_params


def slow(test):
    """Marks `test` slow (`-m slow` selects it) and skips it unless SCENIC_EQX_SLOW_TESTS=1."""
    run = os.environ.get("SCENIC_EQX_SLOW_TESTS") == "1"
    skip = pytest.mark.skipif(not run, reason="slow: set SCENIC_EQX_SLOW_TESTS=1")
    return pytest.mark.slow(skip(test))


CHECKPOINT_EVERY = 4


def worker_args(num_steps: int) -> tuple:
    # A short sleep after each step gives a signal time to land where it was aimed.
    return ("--num_steps", num_steps, "--checkpoint_every", CHECKPOINT_EVERY, "--step_sleep", 0.02)


def uninterrupted_params(workdir, num_steps: int) -> list[np.ndarray]:
    worker = WorkerProcess(workdir, *worker_args(num_steps))
    assert worker.wait() == 0, worker.output[-3000:]
    assert worker.steps == list(range(1, num_steps + 1))
    return load_params(workdir)


def run_with_faults(
    workdir, num_steps: int, faults: list[tuple[str, float, int]]
) -> list[tuple[WorkerProcess, int]]:
    """Runs the worker once per fault, then once more to the end.

    Each fault is `("step", k, signum)`: the signal right after the worker announces
    step `k` or a later one (after the step's checkpoint, if one is due, was saved);
    `("start", seconds, signum)`: the signal that long after the process starts; or
    `("training", seconds, signum)`: that long after the run's first step.
    Returns each run's worker and exit code.
    """
    runs = []
    for kind, when, signum in faults:
        worker = WorkerProcess(workdir, *worker_args(num_steps))
        if kind == "step":
            worker.wait_for_step(when)
        elif kind == "training":
            worker.wait_for_step(0)
            time.sleep(when)
        else:
            time.sleep(when)
        if worker.process.poll() is None:
            worker.signal(signum)
        runs.append((worker, worker.wait()))
    final = WorkerProcess(workdir, *worker_args(num_steps))
    runs.append((final, final.wait()))
    assert runs[-1][1] == 0, final.output[-3000:]
    return runs


def check_lost_work(runs, num_steps: int) -> None:
    """A killed run redid at most `checkpoint_every` steps; a preempted run none."""
    for i, (worker, code) in enumerate(runs[:-1]):
        later = [w for w, _ in runs[i + 1 :] if w.steps]
        resumed = later[0].steps[0] - 1 if later else num_steps
        if code == 143:
            assert worker.preempted_step() == resumed == max(worker.steps), worker.output[-3000:]
        elif worker.steps:
            assert code in (-signal.SIGKILL, 0), worker.output[-3000:]
            assert 0 <= max(worker.steps) - resumed <= CHECKPOINT_EVERY, (max(worker.steps), resumed)


def test_killed_and_preempted_runs_resume_to_the_uninterrupted_parameters(tmp_path):
    expected = uninterrupted_params(tmp_path / "uninterrupted", 24)
    workdir = tmp_path / "interrupted"
    faults = [
        ("step", 8, signal.SIGKILL),  # step 8 starts a save: killed while it is written
        ("step", 13, signal.SIGKILL),
        ("step", 18, signal.SIGTERM),
    ]
    runs = run_with_faults(workdir, 24, faults)
    assert [code for _, code in runs] == [-signal.SIGKILL, -signal.SIGKILL, 143, 0]
    assert runs[2][0].preempted_step() == 18
    check_lost_work(runs, 24)
    for a, b in zip(load_params(workdir), expected, strict=True):
        np.testing.assert_array_equal(a, b)


@slow
def test_ten_kills_at_random_moments(tmp_path):
    num_steps = 60
    expected = uninterrupted_params(tmp_path / "uninterrupted", num_steps)
    rng = random.Random(0)
    # Kills after announced steps (some at save steps, right after the save), a
    # preemption, and kills at random times: during start-up (imports, compilation,
    # restoring) and during training (steps and saves alike), each run short of the end.
    steps = [3, 8, 12, 17, 20, 26, 32, 36, 41, 47, 52]
    faults = [("step", s, signal.SIGKILL) for s in steps]
    faults[6] = ("step", 32, signal.SIGTERM)
    for kind, low, high in [("start", 0.5, 3.0)] * 2 + [("training", 0.0, 0.3)] * 3:
        faults.insert(rng.randrange(len(faults) + 1), (kind, rng.uniform(low, high), signal.SIGKILL))
    runs = run_with_faults(tmp_path / "interrupted", num_steps, faults)
    print("faults:", faults, "exit codes:", [code for _, code in runs])
    assert sum(code == -signal.SIGKILL for _, code in runs) >= 10
    assert 143 in [code for _, code in runs]
    check_lost_work(runs, num_steps)
    for a, b in zip(load_params(tmp_path / "interrupted"), expected, strict=True):
        np.testing.assert_array_equal(a, b)
