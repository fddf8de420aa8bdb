import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import loops
from scenic_eqx.data import _synthetic_segmentation
from scenic_eqx.tasks import SegmentationTask, create_task

# One 2x2 image, 2 classes. Pixel softmax probabilities: (0,0) [.75, .25], (0,1)
# [.5, .5] (argmax: class 0), (1,0) [.5, .5], (1,1) [.25, .75]; labels 0, 1, ignored
# (255), 0. Cross-entropies of the valid pixels: -log .75, log 2, log 4.
LOGITS = jnp.log(jnp.array([[[[3.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 3.0]]]]))
LABELS = jnp.array([[[0, 1], [255, 0]]], jnp.int32)
CROSS_ENTROPIES = (-math.log(0.75), math.log(2), math.log(4))
LOSS = sum(CROSS_ENTROPIES) / 3  # 0.78904

_loss_and_metrics = jax.jit(lambda task, o, b: (task.loss(o, b), task.metrics(o, b)))
_value_and_grad = jax.jit(lambda task, o, b: jax.value_and_grad(task.loss)(o, b))


def _random(rng, batch_size, size=(3, 4), num_classes=3):
    logits = jnp.asarray(3 * rng.normal(size=(batch_size, *size, num_classes)), jnp.float32)
    label = jnp.asarray(rng.integers(0, num_classes, size=(batch_size, *size)), jnp.int32)
    return logits, label


def _assert_metrics_close(actual, expected):
    assert set(actual) == set(expected) == {"pixel_accuracy", "loss", "confusion_matrix"}
    for name in expected:
        for a, e in zip(actual[name], expected[name]):
            np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-6)


def test_loss_literal():
    loss, _ = _loss_and_metrics(SegmentationTask(), LOGITS, {"label": LABELS})
    assert loss.shape == () and loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, LOSS, rtol=1e-6)


def test_metrics_and_summary_literal():
    task = SegmentationTask()
    _, metrics = _loss_and_metrics(task, LOGITS, {"label": LABELS, "batch_mask": jnp.ones(1)})
    np.testing.assert_allclose(metrics["pixel_accuracy"], (1.0, 3.0))
    np.testing.assert_allclose(metrics["loss"], (3 * LOSS, 3.0), rtol=1e-6)
    confusion, normalizer = metrics["confusion_matrix"]
    assert confusion.dtype == normalizer.dtype == jnp.float32
    # Rows: true class; columns: predicted class.
    np.testing.assert_array_equal(confusion, [[1.0, 1.0], [1.0, 0.0]])
    assert normalizer == 1.0
    summary = task.summarize(jax.device_get(metrics))
    # IoU of class 0: 1 / (2 + 2 - 1); class 1: 0 / (1 + 1).
    expected = {
        "pixel_accuracy": 1 / 3,
        "loss": LOSS,
        "mean_iou": 1 / 6,
        "iou/0": 1 / 3,
        "iou/1": 0.0,
    }
    assert summary == pytest.approx(expected, rel=1e-6)
    assert all(type(v) is float for v in summary.values())


def test_class_weights_literal():
    task = create_task("segmentation", class_weights=[1, 2])
    assert task.class_weights == (1.0, 2.0)
    a, b, c = CROSS_ENTROPIES  # labels 0, 1, 0
    expected = (a + 2 * b + c) / 4
    loss, metrics = _loss_and_metrics(task, LOGITS, {"label": LABELS})
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], (4 * expected, 4.0), rtol=1e-6)
    # Class weights weigh the loss only.
    np.testing.assert_allclose(metrics["pixel_accuracy"], (1.0, 3.0))


def test_ignored_pixels_count_nowhere():
    rng = np.random.default_rng(0)
    logits, label = _random(rng, 8)
    ignored = jnp.asarray(rng.uniform(size=label.shape) < 0.3)
    task = SegmentationTask(ignore_label=-1)
    batch = {"label": jnp.where(ignored, -1, label)}
    loss, metrics = _loss_and_metrics(task, logits, batch)
    # The same as giving those pixels zero weight with a per-pixel mask ...
    masked = {"label": label, "batch_mask": (~ignored).astype(jnp.float32)}
    masked_loss, masked_metrics = _loss_and_metrics(task, logits, masked)
    np.testing.assert_allclose(loss, masked_loss, rtol=1e-6)
    _assert_metrics_close(metrics, masked_metrics)
    assert float(metrics["pixel_accuracy"][1]) == int(np.sum(~ignored))
    # ... and their logits have no effect and get no gradient.
    noisy = jnp.where(ignored[..., None], 100 * logits, logits)
    np.testing.assert_allclose(_loss_and_metrics(task, noisy, batch)[0], loss, rtol=1e-6)
    _, grad = _value_and_grad(task, logits, batch)
    assert np.all(np.asarray(grad)[np.asarray(ignored)] == 0)


@pytest.mark.parametrize("class_weights", [None, (0.5, 1.0, 3.0)])
def test_padding_examples_count_nowhere(class_weights):
    rng = np.random.default_rng(1)
    task = SegmentationTask(class_weights=class_weights)
    logits, label = _random(rng, 5)
    pad_logits, pad_label = _random(rng, 3)
    padded = {
        "label": jnp.concatenate([label, pad_label]),
        "batch_mask": jnp.array([1.0] * 5 + [0.0] * 3),
    }
    padded_loss, padded_metrics = _loss_and_metrics(task, jnp.concatenate([logits, pad_logits]), padded)
    sliced_loss, sliced_metrics = _loss_and_metrics(task, logits, {"label": label})
    np.testing.assert_allclose(padded_loss, sliced_loss, rtol=1e-6)
    _assert_metrics_close(padded_metrics, sliced_metrics)


def test_per_pixel_mask_weights_pixels():
    # Weight 2 on pixel (0, 0) counts it twice.
    mask = jnp.array([[[2.0, 1.0], [1.0, 1.0]]])
    a, b, c = CROSS_ENTROPIES
    loss, metrics = _loss_and_metrics(SegmentationTask(), LOGITS, {"label": LABELS, "batch_mask": mask})
    np.testing.assert_allclose(loss, (2 * a + b + c) / 4, rtol=1e-6)
    np.testing.assert_allclose(metrics["pixel_accuracy"], (2.0, 4.0))
    np.testing.assert_array_equal(metrics["confusion_matrix"][0], [[2.0, 1.0], [1.0, 0.0]])


def test_all_padding_gives_zero_not_nan():
    task = SegmentationTask()
    batch = {"label": LABELS, "batch_mask": jnp.zeros(1)}
    loss, grad = _value_and_grad(task, LOGITS, batch)
    assert loss == 0.0
    np.testing.assert_array_equal(grad, jnp.zeros_like(LOGITS))
    _, metrics = _loss_and_metrics(task, LOGITS, batch)
    assert all(np.all(np.asarray(v) == 0) for name, (v, _) in metrics.items())
    with np.errstate(invalid="ignore"):  # 0 / 0 pixel accuracy and loss
        assert math.isnan(task.summarize(jax.device_get(metrics))["mean_iou"])


def test_jit_equals_eager_and_gradient_is_finite():
    rng = np.random.default_rng(2)
    task = SegmentationTask(class_weights=(1.0, 2.0, 0.5))
    logits, label = _random(rng, 8)
    batch = {"label": label, "batch_mask": jnp.array([1.0] * 6 + [0.0] * 2)}
    jit_loss, jit_metrics = _loss_and_metrics(task, logits, batch)
    np.testing.assert_allclose(jit_loss, task.loss(logits, batch), rtol=1e-6)
    _assert_metrics_close(jit_metrics, task.metrics(logits, batch))
    _, grad = _value_and_grad(task, logits, batch)
    assert grad.shape == logits.shape and np.all(np.isfinite(grad))
    assert np.any(grad[:6] != 0) and np.all(grad[6:] == 0)
    # Softmax cross-entropy: each pixel's gradient sums to zero over classes.
    np.testing.assert_allclose(jnp.sum(grad, axis=-1), 0.0, atol=1e-7)


def test_summarize_absent_class_is_nan_and_left_out_of_the_mean():
    confusion = np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 4.0]])
    totals = {
        "confusion_matrix": (confusion, np.array(5.0)),
        "pixel_accuracy": (np.array(7.0), np.array(10.0)),
    }
    summary = SegmentationTask().summarize(totals)
    # Class 1 is predicted once but never a label: IoU 0. Class 0: 3 / (4 + 5 - 3).
    assert summary["iou/0"] == pytest.approx(0.5)
    assert summary["iou/1"] == 0.0
    assert summary["iou/2"] == pytest.approx(4 / 6)
    assert summary["mean_iou"] == pytest.approx((0.5 + 0 + 4 / 6) / 3)
    absent = np.array([[3.0, 0.0, 1.0], [0.0, 0.0, 0.0], [2.0, 0.0, 4.0]])
    summary = SegmentationTask().summarize({"confusion_matrix": (absent, np.array(1.0))})
    assert math.isnan(summary["iou/1"])
    assert summary["mean_iou"] == pytest.approx((3 / 6 + 4 / 7) / 2)


class _PixelLinear(eqx.Module):
    """A 1x1 convolution: per-pixel linear logits."""

    weight: jax.Array
    bias: jax.Array

    def __call__(self, x, *, key=None):
        return x @ self.weight + self.bias[None, None, :]


def _oracle_iou(label, prediction, weights, num_classes):
    """Per-class IoU and pixel accuracy from a NumPy confusion matrix over every pixel."""
    confusion = np.bincount(
        (label * num_classes + prediction).ravel(), weights.ravel(), minlength=num_classes**2
    ).reshape(num_classes, num_classes)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    assert np.all(union > 0)
    return intersection / union, intersection.sum() / confusion.sum()


def test_mean_iou_is_global_whatever_the_eval_batch_size(getkey):
    num_classes, num_examples = 4, 52  # 52 divides by neither batch size: padding
    data = _synthetic_segmentation.generate(num_examples, image_size=8, seed=3, split="test")
    model = _PixelLinear(
        4 * jax.random.normal(getkey(), (3, num_classes)),
        jnp.array([2.0, 0.0, 0.0, 0.0]),
    )
    prediction = np.argmax(data["inputs"] @ np.asarray(model.weight) + np.asarray(model.bias), -1)
    # Per-pixel weights too: 0 or 1 at random, padded by `evaluate` (12 -> 16 rows).
    pixel_mask = np.random.default_rng(0).integers(0, 2, size=data["label"].shape).astype(np.float32)
    runs = [
        (data, 8, np.ones(data["label"].shape)),
        (data, 24, np.ones(data["label"].shape)),
        ({**data, "batch_mask": pixel_mask}, 12, pixel_mask),
    ]
    task = SegmentationTask()
    for arrays, batch_size, weights in runs:
        iou, accuracy = _oracle_iou(data["label"], prediction, weights, num_classes)
        assert 0.05 < iou.mean() < 0.95  # neither trivial nor perfect
        batches = _synthetic_segmentation.EvalBatches(arrays, batch_size=batch_size)
        results = loops.evaluate(model, task, batches)
        assert results["mean_iou"] == pytest.approx(iou.mean(), rel=1e-6)
        for k in range(num_classes):
            assert results[f"iou/{k}"] == pytest.approx(iou[k], rel=1e-6)
        assert results["pixel_accuracy"] == pytest.approx(accuracy, rel=1e-6)


@pytest.mark.parametrize(
    "batch, match",
    [
        (
            {"label": LABELS[0]},
            r'`batch\["label"\]` must be an integer class map of shape \(1, 2, 2\), .* Received: shape \(2, 2\) and dtype int32\.',
        ),
        ({"label": LABELS.astype(jnp.float32)}, r"Received: shape \(1, 2, 2\) and dtype float32\."),
        (
            {"label": LABELS, "batch_mask": jnp.ones((1, 2))},
            r'`batch\["batch_mask"\]` must be a per-example mask \(1,\) or a per-pixel mask \(1, 2, 2\), .* Received: shape \(1, 2\)\.',
        ),
        (
            {"inputs": LABELS},
            r'`batch` must have a "label" entry, which SegmentationTask reads. Received: a batch with keys \[\'inputs\'\]\.',
        ),
    ],
)
def test_bad_batch(batch, match):
    with pytest.raises(ValueError, match=match):
        SegmentationTask().loss(LOGITS, batch)
    with pytest.raises(ValueError, match=match):
        SegmentationTask().metrics(LOGITS, batch)


def test_label_out_of_range_raises():
    match = (
        r'`batch\["label"\]` must hold class indices in \[0, 2\) \(`num_classes` = 2, the logits\' '
        r"last axis\) or `ignore_label` \(=255\), on pixels that count. Received: 1 value\(s\) "
        r"outside it, from 2 to 2; the counted labels span \[0, 2\]\."
    )
    batch = {"label": LABELS.at[0, 0, 0].set(2)}
    with pytest.raises(ValueError, match=match):
        SegmentationTask().loss(LOGITS, batch)
    with pytest.raises(Exception, match=match):
        jax.block_until_ready(_loss_and_metrics(SegmentationTask(), LOGITS, batch))
    # A pixel of weight 0 (a padding example, or masked out per pixel) may hold anything.
    masked = {**batch, "batch_mask": jnp.ones((1, 2, 2)).at[0, 0, 0].set(0.0)}
    loss, _ = jax.block_until_ready(_loss_and_metrics(SegmentationTask(), LOGITS, masked))
    assert jnp.isfinite(loss)
    padding = {**batch, "batch_mask": jnp.zeros((1,))}
    jax.block_until_ready(_loss_and_metrics(SegmentationTask(), LOGITS, padding))


def test_class_weights_must_match_the_classes():
    with pytest.raises(
        ValueError,
        match=r"`class_weights` must have one entry per class of the logits \(2\). Received: 3 entries \(=\(1.0, 1.0, 1.0\)\).",
    ):
        SegmentationTask(class_weights=(1, 1, 1)).loss(LOGITS, {"label": LABELS})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"class_weights": (1.0, -1.0)},
            r"`class_weights` must be finite non-negative .* Received: \(1.0, -1.0\).",
        ),
        (
            {"class_weights": (0.0, 0.0)},
            r"`class_weights` must be .* not all zero. Received: \(0.0, 0.0\).",
        ),
        ({"class_weights": (1.0, math.inf)}, r"`class_weights` must be finite .* Received: \(1.0, inf\)."),
        ({"class_weights": ()}, r"`class_weights` must be .* Received: \(\)."),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SegmentationTask(**kwargs)


def test_ignore_label_must_be_an_integer():
    with pytest.raises(TypeError, match=r"`ignore_label` must be an integer. Received: True."):
        SegmentationTask(ignore_label=True)


def test_dice_term_literal():
    task = SegmentationTask(dice_loss_coef=0.5)
    # Over the 3 counted pixels, class 0 has probabilities .75, .5, .25 against the mask
    # 1, 0, 1: overlap 1, sums 1.5 and 2, Dice loss 1 - (2 + 1) / (3.5 + 1) = 1/3. Class
    # 1 has .25, .5, .75 against 0, 1, 0: overlap .5, sums 1.5 and 1, 1 - 2 / 3.5 = 3/7.
    dice = (1 / 3 + 3 / 7) / 2  # = 8/21
    loss, metrics = _loss_and_metrics(task, LOGITS, {"label": LABELS})
    np.testing.assert_allclose(loss, LOSS + 0.5 * dice, rtol=1e-6)
    assert set(metrics) == {"pixel_accuracy", "cross_entropy", "dice_loss", "confusion_matrix"}
    np.testing.assert_allclose(metrics["cross_entropy"], (3 * LOSS, 3.0), rtol=1e-6)
    np.testing.assert_allclose(metrics["dice_loss"], (dice, 1.0), rtol=1e-6)
    summary = task.summarize(jax.device_get(metrics))
    assert summary["loss"] == pytest.approx(LOSS + 0.5 * dice, rel=1e-6)
    assert summary["dice_loss"] == pytest.approx(dice, rel=1e-6)


def test_dice_term_padding_and_ignored_pixels_count_nowhere():
    rng = np.random.default_rng(4)
    task = SegmentationTask(dice_loss_coef=1.0, ignore_label=-1)
    logits, label = _random(rng, 4)
    pad_logits, pad_label = _random(rng, 2)
    padded = {"label": jnp.concatenate([label, pad_label]), "batch_mask": jnp.array([1.0] * 4 + [0.0] * 2)}
    padded_loss, padded_metrics = _loss_and_metrics(task, jnp.concatenate([logits, pad_logits]), padded)
    sliced_loss, sliced_metrics = _loss_and_metrics(task, logits, {"label": label})
    np.testing.assert_allclose(padded_loss, sliced_loss, rtol=1e-6)
    for name in ("cross_entropy", "dice_loss"):
        np.testing.assert_allclose(padded_metrics[name], sliced_metrics[name], rtol=1e-6)
    # An ignored pixel's logits change nothing; its gradient is 0.
    ignored = {"label": label.at[:, 0, 0].set(-1)}
    loss, grad = _value_and_grad(task, logits, ignored)
    np.testing.assert_allclose(
        _loss_and_metrics(task, logits.at[:, 0, 0].mul(50.0), ignored)[0], loss, rtol=1e-6
    )
    assert np.all(np.asarray(grad)[:, 0, 0] == 0) and np.isfinite(grad).all()


def test_bad_dice_loss_coef():
    with pytest.raises(ValueError, match=r"`dice_loss_coef` must be a finite number >= 0. Received: -1.0."):
        SegmentationTask(dice_loss_coef=-1)
