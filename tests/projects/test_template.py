"""projects/template: run the README's own commands, shortened, and beat chance on test."""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
README = os.path.join(ROOT, "projects", "template", "README.md")
# The README documents `--num_steps` for a shorter run; it must be at least the
# schedule's warmup (20 steps).
NUM_STEPS = 60


def readme_commands() -> list[list[str]]:
    """The command lines of the README's fenced bash blocks, split into arguments."""
    text = pathlib.Path(README).read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line, comments=True) for line in lines if line and not line.startswith("#")]


def shortened(command: list[str], workdir: str) -> list[str]:
    """`command` with its `--workdir` replaced by `workdir` and `--num_steps` added."""
    command = list(command)
    command[command.index("--workdir") + 1] = workdir
    return [*command, "--num_steps", str(NUM_STEPS)]


def run_readme_commands(workdir: str, tfds_dir: str) -> list[dict]:
    """Runs the README's commands, shortened, in `workdir`; returns each printed metrics."""
    env = dict(os.environ, TFDS_DATA_DIR=tfds_dir, TF_CPP_MIN_LOG_LEVEL="2")
    # The script runs as a user's would: one CPU device, not the suite's eight fake ones.
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.pop("XLA_FLAGS", "")).strip()
    if flags:  # XLA reads a value that does not start with "--" as a file name
        env["XLA_FLAGS"] = flags
    printed = []
    for command in readme_commands():
        argv = shortened(command, workdir)
        if argv[0] == ".venv/bin/python":  # the suite's own interpreter is that of .venv
            argv[0] = sys.executable
        result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        lines = [line for line in result.stdout.splitlines() if line.startswith("test metrics: ")]
        assert len(lines) == 1, result.stdout
        printed.append(json.loads(lines[0].removeprefix("test metrics: ")))
    return printed


def test_readme_has_a_training_command():
    commands = readme_commands()
    assert commands, "no command in the README's bash blocks"
    for command in commands:
        assert command[:2] == [".venv/bin/python", "projects/template/main.py"], command
        assert "--workdir" in command, command


# One test, not two: the second half needs the first's checkpoint, and a module-scoped
# fixture would run the script once per xdist worker.
def test_readme_commands_beat_chance_and_scenic_eqx_train_resumes_them(tmp_path, monkeypatch):
    tfds_dir, workdir = str(tmp_path / "tfds"), str(tmp_path / "run")
    metrics = run_readme_commands(workdir, tfds_dir)[-1]
    assert metrics == json.loads(pathlib.Path(os.path.join(workdir, "test_metrics.json")).read_text())
    # The template task's metrics: the classification ones and its own `confidence`.
    assert set(metrics) == {"accuracy", "top_5_accuracy", "loss", "confidence"}
    # 10 classes: chance is 0.1; after 60 steps the model is far above it.
    assert metrics["accuracy"] > 0.5, metrics
    assert 0.1 < metrics["confidence"] <= 1.0 and metrics["loss"] > 0.0, metrics
    steps = [
        json.loads(line)["step"]
        for line in pathlib.Path(os.path.join(workdir, "metrics.jsonl")).read_text().splitlines()
    ]
    assert steps[-1] == NUM_STEPS
    assert max(map(int, os.listdir(os.path.join(workdir, "checkpoints")))) == NUM_STEPS

    # `config.trainer` hands `scenic-eqx train` to `main.py`'s `train`: on the same
    # workdir it resumes at the last step, trains nothing and evaluates the same model.
    from scenic_eqx import cli

    monkeypatch.setenv("TFDS_DATA_DIR", tfds_dir)
    config = os.path.join(ROOT, "projects", "template", "configs", "smoke.py")
    argv = ["train", "--config", config, "--workdir", workdir, f"--config.num_train_steps={NUM_STEPS}"]
    records = pathlib.Path(os.path.join(workdir, "metrics.jsonl")).read_text()
    assert cli.main(argv) == 0
    assert pathlib.Path(os.path.join(workdir, "metrics.jsonl")).read_text() == records
    resumed = json.loads(pathlib.Path(os.path.join(workdir, "test_metrics.json")).read_text())
    # Exact metrics: the same on this process's 8 devices as on the script's one.
    assert resumed["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert resumed["loss"] == pytest.approx(metrics["loss"], rel=1e-5)
