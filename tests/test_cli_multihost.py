"""`scenic-eqx` on two `jax.distributed` processes started from the command line."""

import json
import math
import os
import subprocess
import sys

import pytest

CONFIG = "projects/baselines/configs/synthetic_segmentation_unet.py:smoke"


def _run(command, workdir, num_processes, port):
    """`scenic-eqx COMMAND` on `num_processes` processes sharing 4 CPU devices; the
    metrics process 0 prints."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={4 // num_processes}"
    argv = [sys.executable, "-m", "scenic_eqx.cli", command, "--config", CONFIG, "--workdir", str(workdir)]
    if num_processes > 1:
        argv += ["--coordinator_address", f"127.0.0.1:{port}", "--num_processes", str(num_processes)]
    procs = [
        subprocess.Popen(
            argv + (["--process_id", str(i)] if num_processes > 1 else []),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(num_processes)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    line = [s for s in logs[0].splitlines() if s.startswith("test ")][-1]
    return json.loads(line[len("test ") :])


def test_two_process_cli_trains_and_evaluates_like_one_process(tmp_path, free_port):
    one = _run("train", tmp_path / "one", 1, free_port())
    # Each host reads its own share of the data, so a two-host run sees the examples
    # in another order: it trains, checkpoints and evaluates, to other numbers.
    two = _run("train", tmp_path / "two", 2, free_port())
    assert set(two) == set(one) and all(math.isfinite(two[n]) for n in ("loss", "mean_iou"))
    assert sorted(os.listdir(tmp_path / "two" / "checkpoints")) == sorted(
        os.listdir(tmp_path / "one" / "checkpoints")
    )
    assert json.loads((tmp_path / "two" / "test_metrics.json").read_text()).keys() == two.keys()
    # The same checkpoint evaluated by two hosts, each on its share of the test set,
    # gives the one-process metrics: sums over hosts, padding counted nowhere.
    shared = _run("eval", tmp_path / "one", 2, free_port())
    for name in ("loss", "pixel_accuracy", "mean_iou"):
        assert shared[name] == pytest.approx(one[name], rel=1e-5, abs=1e-6), name
