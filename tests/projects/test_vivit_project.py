"""projects/vivit: write the synthetic DMVR-layout videos, train the config through the CLI
(`loops.fit`), and beat chance on the held-out videos; the same videos in memory; a ViViT
started from an image ViT checkpoint by config; the Kinetics-400 recipe's model."""

import importlib.util
import json
import os
import pathlib

import equinox as eqx
import jax
import numpy as np
import pytest

from scenic_eqx import cli, data, nn, run

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
        "train", "--config", CONFIG, "--workdir", str(workdir),
        f"--config.dataset.train_files={paths['train']}",
        f"--config.dataset.test_files={paths['test']}",
        "--config.num_train_steps=60", "--config.schedule_kwargs.warmup_steps=5",
        "--config.log_every=10", "--config.eval_every=60", "--config.checkpoint_every=60",
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


def test_in_memory_dataset_serves_the_generated_videos():
    make = _make_synthetic_videos()
    dataset = data.get_dataset(
        "moving_squares", batch_size=4, eval_batch_size=4, num_train=8, num_test=6, num_frames=8
    )
    assert dataset.meta_data["num_classes"] == 2
    batch = next(iter(dataset.test_iter))
    videos, labels = make.make_split("test", 4, num_frames=8)
    # One generator for both: the test split, in order, as float frames in [0, 1].
    np.testing.assert_allclose(batch["inputs"], np.stack(videos) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(batch["label"], labels)


def test_vivit_from_a_vit_checkpoint_by_config_computes_the_vit_on_a_still_frame():
    """`vivit_from_image_vit` with a Google `.npz`: the ViViT on [0, 1] pixels gives the
    logits of the ViT on the same pixels scaled to [-1, 1], as the checkpoint was trained."""
    run.import_file(os.path.join(PROJECT, "model.py"))
    checkpoint = os.path.join(os.path.dirname(__file__), "..", "nn", "fixtures", "google_vit.npz")
    sizes = dict(hidden_size=16, num_layers=2, num_heads=2, mlp_dim=32)
    vivit = nn.create(
        "vivit_from_image_vit", num_classes=5, key=jax.random.key(0), backbone_weights=checkpoint,
        backbone_num_classes=5, tubelet_size=(1, 8, 8), num_frames=1, image_size=32, **sizes,
    )  # fmt: skip
    vit = nn.load_weights(nn.ViT(5, 8, **sizes, image_size=32, key=jax.random.key(1)), checkpoint)
    frame = jax.random.uniform(jax.random.key(2), (32, 32, 3))
    np.testing.assert_allclose(vivit(frame[None]), vit(2 * frame - 1), rtol=1e-5, atol=1e-5)


def test_kinetics400_recipe_is_the_papers_vivit_b_factorised_encoder():
    config = run.load_config(os.path.join(PROJECT, "configs", "kinetics400.py"))
    assert (config.dataset.num_frames, config.dataset.image_size, config.batch_size) == (32, 224, 64)
    assert (config.dataset.num_test_clips, config.dataset.num_test_crops) == (4, 3)
    arguments = {k: v for k, v in config.model.items() if k != "backbone_weights"}
    shapes = eqx.filter_eval_shape(
        lambda key: nn.create(config.model_name, num_classes=400, **arguments, key=key), jax.random.key(0)
    )
    count = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(shapes) if hasattr(a, "shape"))
    # Arnab et al. 2021, Table 4: ViViT-B/16x2 Factorised Encoder, 115.1M parameters.
    assert round(count / 1e6, 1) == 115.1 and shapes.temporal_encoder is not None
    schedule = run.build_optimizer(config)[1]
    warmup = config.schedule_kwargs.warmup_steps
    assert float(schedule(warmup)) == pytest.approx(0.05) and float(schedule(config.num_train_steps)) == 0.0


def test_project_functions_refuse_bad_arguments():
    model = run.import_file(os.path.join(PROJECT, "model.py"))
    with pytest.raises(
        ValueError, match=r"takes the arguments of `nn.ViViT` .* Received: unknown argument\(s\) 'patch_size'"
    ):
        nn.create("vivit_from_image_vit", num_classes=2, patch_size=16, key=jax.random.key(0))
    tiny = nn.ViViT(2, (2, 4, 4), 8, 1, 2, 16, num_frames=2, image_size=4, key=jax.random.key(0))
    with pytest.raises(
        ValueError, match=r"one value per input channel \(3\), `std` positive. Received: mean=\(0.5,\)"
    ):
        model.fold_input_normalization(tiny, (0.5,), (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match=r"`split` must be one of \('train', 'test'\). Received: 'valid'"):
        _make_synthetic_videos().make_split("valid", 2)
