"""The segmentation baseline config: its smoke version trains end to end and reports mIoU."""

import json
import math

import equinox as eqx
import jax
import pytest

from scenic_eqx import _config, nn, run

CONFIG = "projects/baselines/configs/synthetic_segmentation_unet.py"


def test_smoke_config_trains_and_reports_mean_iou(tmp_path):
    config = _config.load_config(CONFIG + ":smoke")
    results = run.train(config, str(tmp_path))
    assert {"mean_iou", "pixel_accuracy", "loss", "iou/0", "iou/3"} <= set(results)
    assert all(type(v) is float for v in results.values())
    assert 0.0 <= results["mean_iou"] <= 1.0 and 0.0 <= results["pixel_accuracy"] <= 1.0
    assert json.loads((tmp_path / "test_metrics.json").read_text()) == pytest.approx(results, nan_ok=True)
    # Training logs and evaluations carry mIoU too, as plain numbers (or "nan" strings).
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "mean_iou" in r]
    evaluated = [r for r in records if "eval_mean_iou" in r]
    assert [r["step"] for r in logged] == [2, 4] and [r["step"] for r in evaluated] == [4]
    for record in logged + evaluated:
        for value in record.values():
            assert isinstance(value, (int, float)) or value == "nan"
    assert math.isfinite(evaluated[0]["eval_mean_iou"])
    assert (tmp_path / "training_curves.png").exists()


def test_full_config_builds_a_unet_for_its_images():
    config = _config.load_config(CONFIG)
    assert config.task_name == "segmentation" and config.dataset_name == "synthetic_segmentation"
    size = config.dataset.image_size
    model = eqx.filter_eval_shape(
        lambda: nn.create(config.model_name, num_classes=4, key=jax.random.key(0), **config.model)
    )
    logits = eqx.filter_eval_shape(model, jax.ShapeDtypeStruct((size, size, 3), jax.numpy.float32))
    assert logits.shape == (size, size, 4)
