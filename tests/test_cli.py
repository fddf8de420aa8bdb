import json
import os
import pathlib

import numpy as np
import pytest

from scenic_eqx import cli, loops, run

CONFIG = "projects/baselines/configs/digits_cnn.py:smoke"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    workdir = tmp_path_factory.mktemp("run")
    os.environ["TFDS_DATA_DIR"] = str(data_dir)
    code = cli.main(
        [
            "train",
            "--config",
            CONFIG,
            "--workdir",
            str(workdir),
            "--config.model.num_filters=(8, 16)",
            "--config.batch_size",
            "32",
        ]
    )
    assert code == 0
    return workdir


def test_train_leaves_everything_in_the_workdir(trained, capsys):
    names = set(os.listdir(trained))
    assert {
        "checkpoints",
        "metrics.jsonl",
        "config.json",
        "test_metrics.json",
        "training_curves.png",
    } <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert sorted(int(s) for s in os.listdir(trained / "checkpoints") if s.isdigit()) == [10, 20]
    config = json.loads(pathlib.Path(trained / "config.json").read_text())
    assert config["batch_size"] == 32 and config["model"]["num_filters"] == [8, 16]


def test_eval_restores_the_same_model(trained, capsys):
    expected = json.loads(pathlib.Path(trained / "test_metrics.json").read_text())
    assert (
        cli.main(
            ["eval", "--config", CONFIG, "--workdir", str(trained), "--config.model.num_filters=(8, 16)"]
        )
        == 0
    )
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("test ")
    printed = json.loads(line[len("test ") :])
    assert printed["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-5)


def test_export_writes_a_model_that_reproduces_the_test_accuracy(trained, tmp_path, capsys):
    """`export` reads the run's saved config; the artifact, run without the model's code,
    classifies the test split as the trained model did."""
    output = str(tmp_path / "digits_cnn.jax")
    assert cli.main(["export", "--workdir", str(trained), "--output", output]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"exported {output}"
    call = loops.load_exported(output)
    dataset = run.build_dataset(run.load_saved_config(str(trained)))
    correct = total = 0.0
    for batch in dataset.test_iter:
        predictions = np.argmax(np.asarray(call(batch["inputs"])), axis=-1)
        correct += float(np.sum((predictions == batch["label"]) * batch["batch_mask"]))
        total += float(np.sum(batch["batch_mask"]))
    expected = json.loads(pathlib.Path(trained / "test_metrics.json").read_text())
    assert correct / total == pytest.approx(expected["accuracy"], abs=1e-5)


def test_bad_override_exits_with_a_message(capsys, tmp_path):
    code = cli.main(["train", "--config", CONFIG, "--workdir", str(tmp_path), "--config.bach_size=3"])
    assert code == 2
    assert "has no key 'bach_size'. Did you mean 'batch_size'?" in capsys.readouterr().err


def test_scale_options_through_the_cli(tmp_path, capsys):
    """FSDP, bfloat16, accumulation, several steps per dispatch and a parameter average,
    from the command line; the run logs its FLOPs, MFU and compile time."""
    os.environ.setdefault("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    options = ["--config.sharding=fsdp", "--config.precision=bfloat16", "--config.accumulate_steps=2",
               "--config.steps_per_dispatch=5", "--config.ema_decay=0.9",
               "--config.peak_flops_per_device=1.8e11"]  # fmt: skip
    config = ["--config", "projects/baselines/configs/digits_vit.py:smoke", "--workdir", str(tmp_path)]
    assert cli.main(["train", *config, *options]) == 0
    records = [json.loads(line) for line in pathlib.Path(tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["flops_per_step"] > 0 and records[0]["num_params"] > 0
    assert records[1]["compile_seconds"] > 0
    assert all(0 < r["mfu"] < 1 and r["examples_per_sec_per_device"] > 0 for r in records[1:])
    assert {"eval_accuracy", "eval_ema_accuracy"} <= set(records[-1])
    trained = json.loads(pathlib.Path(tmp_path / "test_metrics.json").read_text())
    assert cli.main(["eval", *config, *options]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1][len("test ") :])
    assert printed["ema_accuracy"] == pytest.approx(trained["ema_accuracy"], abs=1e-5)
    assert printed["accuracy"] == pytest.approx(trained["accuracy"], abs=1e-5)
