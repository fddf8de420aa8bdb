"""Two `jax.distributed` processes on 127.0.0.1 train like one process with all the devices,
with replicated and with FSDP-sharded parameters."""

import os
import subprocess
import sys

import numpy as np

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")


def run_cluster(num_processes: int, out, port: int) -> dict:
    port = str(port)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(i), str(num_processes), port, str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(num_processes)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    return dict(np.load(out / "result.npz"))


def test_two_hosts_match_one_host(tmp_path, free_port):
    (tmp_path / "two").mkdir()
    (tmp_path / "one").mkdir()
    two = run_cluster(2, tmp_path / "two", free_port())
    one = run_cluster(1, tmp_path / "one", free_port())
    assert set(two) == set(one)
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # The detection evaluation scored every host's detections, not this host's alone.
    assert 0.05 < one["eval_ap50"] < 1.0
    # Both hosts checkpointed into one workdir through orbax's multi-process protocol.
    assert sorted(os.listdir(tmp_path / "two" / "workdir" / "checkpoints")) == ["3", "6"]
    # The FSDP run (its middle weight split over both hosts' devices) matched too.
    assert {"fsdp_p2", "fsdp_loss", "fsdp_eval_loss"} <= set(one)
    assert sorted(os.listdir(tmp_path / "two" / "fsdp_workdir" / "checkpoints")) == ["3", "6"]
