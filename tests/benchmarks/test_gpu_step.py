"""`benchmarks/gpu_step.py` runs end to end at its tiny size on CPU, without TensorFlow."""

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
INSTALLED = {
    "scenic_eqx": True,
    "flax_linen": importlib.util.find_spec("flax") is not None,
    "timm": all(importlib.util.find_spec(name) for name in ("torch", "timm")),
}


@pytest.mark.parametrize("model", ["vit", "resnet"])  # one run each, so that they can run in parallel
def test_tiny_run_reports_every_installed_implementation(tmp_path, model):
    # The benchmark machine has no TensorFlow: any import of it fails here too.
    blocker = tmp_path / "no_tensorflow" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('TensorFlow is not installed on this machine')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker.parent), str(ROOT / "src")]))
    # Values, not speed, are checked here: XLA's cheapest backend optimisation compiles faster.
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    out = tmp_path / "results.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_step.py"), "--size", "tiny", "--models", model,
               "--repeats", "1", "--steps", "2", "--json", str(out)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    report = json.loads(out.read_text())
    (entry,) = report["models"].values()
    assert entry["batch_size"] == 2 and entry["forward_flops"] > 0
    for impl, installed in INSTALLED.items():
        row = entry["implementations"][impl]
        if not installed:
            assert "not installed" in row["skipped"]
            continue
        (seconds,) = row["seconds_per_step"]
        assert 0 < seconds < 60 and math.isfinite(row["loss"][0])
        assert row["images_per_second"] == 2 / seconds
        assert row["mfu"] is None  # a CPU has no bfloat16 peak in the table
        assert f"| {entry['name']} | {impl} | cpu | 2 |" in result.stdout
