"""Every project's smoke configs train one step and evaluate, so no project can rot.

Each `projects/*/configs/*.py` is a smoke config when it is named `smoke.py` (called as
`get_config()`) or when its `get_config` takes an argument (called as
`get_config("smoke")`). Each runs through the `scenic-eqx train` command: the command a
README or config docstring gives for it, verbatim but for its workdir, else a plain
`scenic-eqx train --config SPEC`, shortened to one training step (its learning-rate
warmup, if any, to none) by `--config.` overrides. The step, a checkpoint and the test
evaluation must give finite metrics. A dataset of the TFDS catalogue (ImageNet, COCO, ...) is served by
`tfds.testing.mock_data`: nothing is downloaded or prepared.
"""

import contextlib
import glob
import inspect
import json
import math
import os

import pytest
import tensorflow_datasets as tfds
from readme_commands import config_spec, readme_commands

from scenic_eqx import _imports, cli, run

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ONE_STEP = dict(num_train_steps=1, log_every=1, eval_every=1, checkpoint_every=1)


def smoke_specs() -> list[str]:
    """`FILE` or `FILE:smoke` for every smoke config under `projects/`, relative to the root."""
    specs = []
    for path in sorted(glob.glob(os.path.join(ROOT, "projects", "*", "configs", "*.py"))):
        relative = os.path.relpath(path, ROOT)
        if os.path.basename(path) == "smoke.py":
            specs.append(relative)
        elif inspect.signature(_imports.import_file(path).get_config).parameters:
            specs.append(relative + ":smoke")
    return specs


def test_every_project_has_a_smoke_config():
    projects = {
        os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "projects", "*")) if os.path.isdir(p)
    }
    with_smoke = {spec.split(os.sep)[1] for spec in smoke_specs()}
    assert projects - {"__pycache__"} == with_smoke


def _dataset_names(config) -> list[str]:
    """The datasets a config reads: its `dataset_name`, or each co-training dataset's."""
    if config.get("co_training"):
        return [entry.dataset_name for entry in config.co_training.values()]
    return [config.get("dataset_name", "")]


def _mocked_if_catalogue(dataset_names: list[str]):
    """TFDS's mock data when a dataset is of TFDS's own catalogue (not one generated here)."""
    for name in (dataset_name.split("/")[0] for dataset_name in dataset_names):
        if name in tfds.list_builders() and not tfds.builder_cls(name).__module__.startswith("scenic_eqx"):
            return tfds.testing.mock_data(num_examples=4)
    return contextlib.nullcontext()


def _documented_command(spec: str) -> list[str]:
    """The README's (or a config docstring's) `scenic-eqx train` command for `spec`, if any."""
    for _, argv in readme_commands():
        if argv[:2] == ["scenic-eqx", "train"] and config_spec(argv) == spec:
            return argv
    return ["scenic-eqx", "train", "--config", spec, "--workdir", "WORKDIR"]


def _with_workdir(argv: list[str], workdir: str) -> list[str]:
    at = argv.index("--workdir") + 1
    return [*argv[:at], workdir, *argv[at + 1 :]]


@pytest.mark.parametrize("spec", smoke_specs())
def test_smoke_config_trains_a_step_and_evaluates(spec, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # configs and trainers name files relative to the root
    config = run.load_config(spec)
    shorter = [f"--config.{key}={value}" for key, value in ONE_STEP.items() if key in config]
    if "warmup_steps" in config.get("schedule_kwargs", {}):
        shorter.append("--config.schedule_kwargs.warmup_steps=0")
    argv = _with_workdir(_documented_command(spec), str(tmp_path)) + shorter
    with _mocked_if_catalogue(_dataset_names(config)):
        assert cli.main(argv[1:]) == 0, argv
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("test ")]
    assert printed, f"{spec}: its trainer returned no test metrics"
    results = json.loads(printed[-1][len("test ") :])
    finite = {
        name: value for name, value in results.items() if isinstance(value, float) and not math.isnan(value)
    }
    assert finite and all(math.isfinite(v) for v in finite.values()), results
    assert os.path.isdir(tmp_path / "checkpoints") or any(tmp_path.iterdir())
