"""`loops.evaluate` with a task's evaluator: COCO AP over the whole evaluation set."""

import equinox as eqx
import jax
import numpy as np
import pytest

from scenic_eqx import loops, tasks

QUERIES, CLASSES, BOXES = 4, 2, 3


class BoxRegressor(eqx.Module):
    """DETR-shaped outputs from a 4x4 image through one linear map: cheap to compile."""

    linear: eqx.nn.Linear

    def __init__(self, *, key):
        self.linear = eqx.nn.Linear(16, QUERIES * (CLASSES + 1) + QUERIES * 4, key=key)

    def __call__(self, x, *, key=None):
        y = self.linear(x.reshape(-1))
        split = QUERIES * (CLASSES + 1)
        return {
            "pred_logits": y[:split].reshape(QUERIES, CLASSES + 1),
            "pred_boxes": jax.nn.sigmoid(y[split:].reshape(QUERIES, 4)),
        }


@pytest.fixture(scope="module")
def model_and_data():
    model = BoxRegressor(key=jax.random.key(0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 4, 4, 1)).astype(np.float32)
    # Targets: the model's own first boxes, jittered, with random classes and padding.
    boxes = np.asarray(jax.vmap(model)(x)["pred_boxes"][:, :BOXES])
    label = {
        "boxes": (boxes + rng.normal(scale=0.03, size=boxes.shape)).astype(np.float32),
        "labels": rng.integers(0, CLASSES, size=(20, BOXES)).astype(np.int32),
        "box_mask": (rng.uniform(size=(20, BOXES)) < 0.7).astype(np.float32),
    }
    return model, {"inputs": x, "label": label}


def _batches(data, size):
    n = len(data["inputs"])
    return [
        {**jax.tree.map(lambda v: v[i : i + size], data), "batch_mask": np.ones(min(size, n - i), np.float32)}
        for i in range(0, n, size)
    ]


def test_ap_covers_the_whole_set_at_any_batch_size(model_and_data):
    model, data = model_and_data
    task = tasks.DetectionTask()
    # The evaluator fed directly with every example at once.
    outputs = jax.vmap(model)(data["inputs"])
    evaluator = task.make_evaluator()
    evaluator.update(jax.device_get(task.evaluator_inputs(outputs, {**data, "batch_mask": np.ones(20)})))
    expected = evaluator.result()
    assert 0.05 < expected["AP50"] < 1.0
    # Batches of 7 (the last one 6) are padded to the 8 devices: padding counts nowhere.
    for size in (7, 20):
        results = loops.evaluate(model, task, _batches(data, size))
        for name in ("AP", "AP50", "AP75", "AR_100"):
            assert results[name] == pytest.approx(expected[name], rel=1e-6), (size, name)
        assert {"loss", "loss_class", "loss_bbox", "loss_giou", "class_error"} <= set(results)
