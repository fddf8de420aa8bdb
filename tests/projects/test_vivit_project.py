"""projects/vivit: write the synthetic DMVR-layout videos, train the config through the CLI
(`loops.fit`), and beat chance on the held-out videos."""

import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

from scenic_eqx import cli

PROJECT = os.path.join(os.path.dirname(__file__), "..", "..", "projects", "vivit")
CONFIG = os.path.join(PROJECT, "configs", "synthetic_video.py")


def _make_synthetic_videos():
    spec = importlib.util.spec_from_file_location(
        "make_synthetic_videos", os.path.join(PROJECT, "make_synthetic_videos.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_videos_need_motion():
    make = _make_synthetic_videos()
    videos, labels = make.make_split("train", 40)
    assert labels == [0, 1] * 20 and videos[0].shape == (12, 16, 16, 3)
    # The square's left column, frame by frame: +1 a frame in class 0, -1 in class 1 ...
    columns = [(v.max(axis=(1, 3)) >= 160).argmax(axis=1) for v in videos]  # [frames]
    for column, label in zip(columns, labels):
        assert set(np.diff(column).tolist()) == {1 - 2 * label}
    # ... over the same columns in both classes, so no single frame tells them apart.
    seen = {label: set(np.concatenate(columns[label::2]).tolist()) for label in (0, 1)}
    assert seen[0] == seen[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    make = _make_synthetic_videos()
    data = tmp_path_factory.mktemp("videos")
    paths = make.write(str(data), num_train=64, num_test=32)
    workdir = tmp_path_factory.mktemp("run")
    code = cli.main([
        "train", "--config", CONFIG + ":smoke", "--workdir", str(workdir),
        f"--config.dataset.train_files={paths['train']}",
        f"--config.dataset.test_files={paths['test']}",
    ])  # fmt: skip
    assert code == 0
    return workdir


def test_loss_decreases_and_held_out_accuracy_beats_chance(trained):
    history = [json.loads(line) for line in pathlib.Path(trained / "metrics.jsonl").read_text().splitlines()]
    train = [record["loss"] for record in history if "loss" in record]
    assert len(train) == 6 and train[-1] < 0.5 * train[0], train
    results = json.loads(pathlib.Path(trained / "test_metrics.json").read_text())
    # 32 held-out videos, each one example of 2 clips x 3 crops: chance is 0.5.
    assert results["accuracy"] >= 0.8
    config = json.loads(pathlib.Path(trained / "config.json").read_text())
    assert config["dataset"]["num_test_clips"] * config["dataset"]["num_test_crops"] == 6
