"""`scenic-eqx train`, signalled for real: SIGTERM saves and exits with 143; a run preempted
and then killed, restarted with the same command, ends with the uninterrupted run's
checkpoint, bitwise.

The slow test runs only with SCENIC_EQX_SLOW_TESTS=1.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest


def slow(test):
    """Marks `test` slow (`-m slow` selects it) and skips it unless SCENIC_EQX_SLOW_TESTS=1."""
    run = os.environ.get("SCENIC_EQX_SLOW_TESTS") == "1"
    skip = pytest.mark.skipif(not run, reason="slow: set SCENIC_EQX_SLOW_TESTS=1")
    return pytest.mark.slow(skip(test))


CONFIG = "projects/baselines/configs/digits_cnn.py:smoke"
# Enough steps (of ~20 ms) that a signal sent at an early log lands during training.
# The watchdog is on too (the config key reaches `fit`), with a timeout it never meets.
OPTIONS = ["--config.model.num_filters=(8, 16)", "--config.num_train_steps=300", "--config.checkpoint_every=50",
           "--config.eval_every=300", "--config.step_timeout_seconds=300"]  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["TFDS_DATA_DIR"] = str(tmp_path_factory.mktemp("tfds"))
    return env


def start(workdir, env) -> subprocess.Popen:
    """The command, its output going to `workdir`'s parent (a pipe nobody reads would fill)."""
    argv = [
        sys.executable,
        "-m",
        "scenic_eqx.cli",
        "train",
        "--config",
        CONFIG,
        "--workdir",
        str(workdir),
        *OPTIONS,
    ]
    # The child writes to its own copy of the file descriptor: ours is closed at once.
    with open(f"{workdir}.log", "a") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def output(workdir) -> str:
    with open(f"{workdir}.log") as f:
        return f.read()


def logged_steps(workdir) -> list[int]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line)["step"] for line in f if line.endswith("\n")]


def signal_at_step(process: subprocess.Popen, workdir, step: int, signum: int) -> int:
    """Sends `signum` once `step` or a later one is logged; returns the last step logged."""
    deadline = time.monotonic() + 300
    while not [s for s in logged_steps(workdir) if s >= step]:
        assert process.poll() is None and time.monotonic() < deadline, output(workdir)[-3000:]
        time.sleep(0.01)
    process.send_signal(signum)
    return logged_steps(workdir)[-1]


def checkpoint_arrays(step_dir) -> list[np.ndarray]:
    """The training state's arrays as saved, read without knowing the model."""
    import orbax.checkpoint as ocp

    path = os.path.join(step_dir, "train_state")
    checkpointer = ocp.StandardCheckpointer()
    on_cpu = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    like = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=on_cpu),
        checkpointer.metadata(path).item_metadata,
    )
    return [np.asarray(x) for x in checkpointer.restore(path, like)]


def test_sigterm_saves_and_exits_with_143(tmp_path, env):
    workdir = tmp_path / "run"
    process = start(workdir, env)
    signal_at_step(process, workdir, 5, signal.SIGTERM)
    assert process.wait(timeout=300) == 143, output(workdir)[-3000:]
    assert "Run the same command to resume." in output(workdir)
    saved = int(output(workdir).split("saved a checkpoint at step ")[1].split(";")[0])
    assert 5 <= saved < 300 and str(saved) in os.listdir(workdir / "checkpoints")
    assert not (workdir / "test_metrics.json").exists()


@slow
def test_preempted_then_killed_run_resumes_to_the_uninterrupted_checkpoint(tmp_path, env):
    reference = start(tmp_path / "uninterrupted", env)
    assert reference.wait(timeout=600) == 0, output(tmp_path / "uninterrupted")[-3000:]

    workdir = tmp_path / "interrupted"
    first = start(workdir, env)
    signal_at_step(first, workdir, 5, signal.SIGTERM)
    assert first.wait(timeout=300) == 143
    second = start(workdir, env)
    killed_after = signal_at_step(second, workdir, 100, signal.SIGKILL)  # right after checkpoint 100
    assert second.wait(timeout=300) == -signal.SIGKILL
    resumed_from = max(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())
    assert killed_after - resumed_from <= 50  # at most `checkpoint_every` steps lost
    third = start(workdir, env)
    assert third.wait(timeout=600) == 0, output(workdir)[-3000:]

    for a, b in zip(checkpoint_arrays(workdir / "checkpoints" / "300"),
                    checkpoint_arrays(tmp_path / "uninterrupted" / "checkpoints" / "300"), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    assert json.loads((workdir / "test_metrics.json").read_text()) == json.loads(
        (tmp_path / "uninterrupted" / "test_metrics.json").read_text()
    )
