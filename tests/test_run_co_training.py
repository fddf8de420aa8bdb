"""A co-training config through `scenic-eqx train`: scikit-learn's digits and an .npz of
the mirrored digits' parity, each with its head and task; a weight of 0 reproduces the
other dataset's single-dataset config run, and both datasets are logged and tested."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from scenic_eqx import cli, run

CONFIG = """
import ml_collections


def get_config(weights="1,1"):
    digits_weight, parity_weight = (float(w) for w in weights.split(","))
    config = ml_collections.ConfigDict()
    config.co_training = {{
        "digits": {{"dataset_name": "digits", "task_name": "classification", "weight": digits_weight}},
        "parity": {{
            "dataset_name": "arrays", "dataset": {{"npz": {npz!r}}},
            "task_name": "classification", "weight": parity_weight,
        }},
    }}
    config.batch_size = 32
    config.eval_batch_size = 64
    config.model_name = "fully_connected"
    config.model = {{"input_shape": (8, 8, 1), "hidden_sizes": (32,)}}
    config.optimizer = "adam"
    config.optimizer_kwargs = {{}}
    config.schedule = "constant"
    config.schedule_kwargs = {{"base_learning_rate": 0.01}}
    config.grad_clip_norm = None
    config.num_train_steps = 30
    config.log_every = 15
    config.eval_every = 30
    config.checkpoint_every = 30
    config.seed = 0
    return config
"""

SINGLE = """
from {module} import get_config as co_training_config


def get_config():
    config = co_training_config()
    entry = config.co_training.{name}
    with config.unlocked():
        config.dataset_name = entry.dataset_name
        config.dataset = entry.get("dataset", {{}})
        config.task_name = entry.task_name
        config.task = {{}}
        config.co_training = None
    return config
"""


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    root = tmp_path_factory.mktemp("co_training")
    x, y = load_digits(return_X_y=True)
    images = (x.reshape(-1, 8, 8, 1)[:, :, ::-1] * (255 / 16)).astype(np.uint8)
    parity = (y % 2).astype(np.int32)
    np.savez(
        root / "parity.npz",
        x_train=images[:1200],
        y_train=parity[:1200],
        x_test=images[1200:],
        y_test=parity[1200:],
    )
    (root / "co_training_config.py").write_text(CONFIG.format(npz=str(root / "parity.npz")))
    for name in ("digits", "parity"):
        (root / f"{name}_alone.py").write_text(SINGLE.format(module="co_training_config", name=name))
    return root


def _train(configs, spec, workdir, monkeypatch):
    monkeypatch.syspath_prepend(str(configs))
    assert cli.main(["train", "--config", str(configs / spec), "--workdir", str(workdir)]) == 0
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return records, json.loads((workdir / "test_metrics.json").read_text())


@pytest.mark.parametrize("trained, idle, weights", [("digits", "parity", "1,0"), ("parity", "digits", "0,1")])
def test_a_weight_of_zero_reproduces_the_single_dataset_config_run(
    configs, tmp_path, monkeypatch, trained, idle, weights
):
    records, test = _train(configs, f"co_training_config.py:{weights}", tmp_path / "co", monkeypatch)
    single_records, single_test = _train(configs, f"{trained}_alone.py", tmp_path / "single", monkeypatch)
    trained_records = [r for r in records if f"{trained}_loss" in r]
    single_trained = [r for r in single_records if "loss" in r]
    assert len(trained_records) == len(single_trained) == 2
    for record, single in zip(trained_records, single_trained):
        assert (
            record[f"{trained}_loss"] == single["loss"]
            and record[f"{trained}_accuracy"] == single["accuracy"]
        )
        assert f"{idle}_loss" in record
    assert test[f"{trained}_accuracy"] == single_test["accuracy"]
    assert test[f"{trained}_loss"] == single_test["loss"]
    assert f"{idle}_accuracy" in test


def test_both_datasets_learn_when_both_are_weighted_and_eval_reads_them_back(
    configs, tmp_path, monkeypatch, capsys
):
    _, test = _train(configs, "co_training_config.py", tmp_path, monkeypatch)
    assert test["digits_accuracy"] > 0.6 and test["parity_accuracy"] > 0.7, test
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", str(tmp_path)]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("test "))
    assert evaluated == pytest.approx(test, abs=1e-5)


@pytest.mark.parametrize(
    "change, match",
    [
        (
            lambda c: c.co_training.digits.__delattr__("task_name"),
            r"must have `dataset_name` and `task_name`.*missing \['task_name'\]",
        ),
        (lambda c: c.co_training.digits.__setattr__("wieght", 1.0), r"unknown \['wieght'\]"),
        (lambda c: c.__setattr__("dataset_name", "digits"), "`config.co_training` replaces dataset_name"),
    ],
)
def test_bad_co_training_configs_are_named(configs, monkeypatch, change, match):
    monkeypatch.syspath_prepend(str(configs))
    config = run.load_config(str(configs / "co_training_config.py"))
    with config.unlocked():
        config.co_training.digits.unlock()
        change(config)
    with pytest.raises(ValueError, match=match):
        run.build_co_training(config)
