import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.tasks import ClassificationTask

# Rows of softmax probabilities [.25, .5, .25], [.25, .25, .5], [.6, .2, .2]: the
# cross-entropies against labels [1, 0, 0] are log 2, log 4 and -log 0.6.
LOGITS = jnp.log(jnp.array([[1.0, 2.0, 1.0], [1.0, 1.0, 2.0], [3.0, 1.0, 1.0]]))
LABELS = jnp.array([1, 0, 0])
LOSS = (math.log(2) + math.log(4) - math.log(0.6)) / 3  # 0.86342239


# Eager dispatch compiles every primitive anew for each shape; property tests on other
# shapes go through these (the task is an argument, so one compilation serves all
# `label_smoothing` values).
_loss_and_metrics = jax.jit(lambda task, o, b: (task.loss(o, b), task.metrics(o, b)))
_value_and_grad = jax.jit(lambda task, o, b: jax.value_and_grad(task.loss)(o, b))


def _batch(label=LABELS, **extra):
    return {"inputs": jnp.zeros((len(label), 2)), "label": label, **extra}


def _padded(logits, batch, num_padding, rng):
    """Append `num_padding` rows of random logits with mask 0 (and arbitrary labels)."""
    batch_size, num_classes = logits.shape
    pad_logits = jnp.asarray(10 * rng.normal(size=(num_padding, num_classes)))
    mask = jnp.concatenate([jnp.ones(batch_size), jnp.zeros(num_padding)])
    label = batch["label"]
    pad_label = jnp.zeros((num_padding, *label.shape[1:]), label.dtype)
    return jnp.concatenate([logits, pad_logits]), {
        "label": jnp.concatenate([label, pad_label]),
        "batch_mask": mask,
    }


def test_loss_literal():
    loss = ClassificationTask().loss(LOGITS, _batch())
    assert loss.shape == () and loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, LOSS, rtol=1e-6)


def test_metrics_literal():
    metrics = ClassificationTask().metrics(LOGITS, _batch())
    # Three classes: no top-5 accuracy.
    assert set(metrics) == {"accuracy", "loss"}
    for value, normalizer in metrics.values():
        assert value.shape == normalizer.shape == ()
        assert value.dtype == normalizer.dtype == jnp.float32
    # Argmaxes are [1, 2, 0]: rows 0 and 2 are right.
    np.testing.assert_allclose(metrics["accuracy"], (2.0, 3.0))
    np.testing.assert_allclose(metrics["loss"], (3 * LOSS, 3.0), rtol=1e-6)


def test_label_smoothing_literal():
    # alpha = 0.3 over 3 classes: targets are 0.8 on the label and 0.1 elsewhere.
    expected = [
        1.2 * math.log(2),  # -(0.1 log .25 + 0.8 log .5 + 0.1 log .25)
        1.9 * math.log(2),  # -(0.8 log .25 + 0.1 log .25 + 0.1 log .5)
        -(0.8 * math.log(0.6) + 0.2 * math.log(0.2)),
    ]
    task = ClassificationTask(label_smoothing=0.3)
    loss = task.loss(LOGITS, _batch())
    np.testing.assert_allclose(loss, np.mean(expected), rtol=1e-6)
    np.testing.assert_allclose(task.metrics(LOGITS, _batch())["loss"], (np.sum(expected), 3.0), rtol=1e-6)
    # Smoothing changes the loss, not the accuracy.
    np.testing.assert_allclose(task.metrics(LOGITS, _batch())["accuracy"], (2.0, 3.0))


def test_mask_weights_the_mean():
    batch = _batch(batch_mask=jnp.array([1.0, 1.0, 0.0]))
    task = ClassificationTask()
    np.testing.assert_allclose(task.loss(LOGITS, batch), 1.5 * math.log(2), rtol=1e-6)
    metrics = task.metrics(LOGITS, batch)
    np.testing.assert_allclose(metrics["accuracy"], (1.0, 2.0))
    np.testing.assert_allclose(metrics["loss"], (3 * math.log(2), 2.0), rtol=1e-6)


def test_missing_mask_means_all_ones():
    task = ClassificationTask()
    with_mask = _batch(batch_mask=jnp.ones(3))
    assert task.loss(LOGITS, _batch()) == task.loss(LOGITS, with_mask)
    assert task.metrics(LOGITS, _batch()) == task.metrics(LOGITS, with_mask)


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_masked_equals_sliced(one_hot, label_smoothing):
    rng = np.random.default_rng(0)
    task = ClassificationTask(label_smoothing=label_smoothing)
    logits = jnp.asarray(rng.normal(size=(5, 7)), jnp.float32)
    label = jnp.asarray(rng.integers(0, 7, size=5), jnp.int32)
    if one_hot:
        label = jax.nn.one_hot(label, 7)
    batch = {"label": label, "batch_mask": jnp.ones(5)}
    sliced_loss, sliced = _loss_and_metrics(task, logits, batch)
    padded_loss, padded = _loss_and_metrics(task, *_padded(logits, batch, 3, rng))
    np.testing.assert_allclose(padded_loss, sliced_loss, rtol=1e-6)
    assert set(padded) == set(sliced) == {"accuracy", "top_5_accuracy", "loss"}
    for name in sliced:
        np.testing.assert_allclose(padded[name], sliced[name], rtol=1e-6)


def test_all_padding_gives_zero_not_nan():
    task = ClassificationTask()
    batch = _batch(batch_mask=jnp.zeros(3))
    loss, grad = _value_and_grad(task, LOGITS, batch)
    assert loss == 0.0
    np.testing.assert_array_equal(grad, jnp.zeros_like(LOGITS))
    for value, normalizer in task.metrics(LOGITS, batch).values():
        assert value == 0.0 and normalizer == 0.0


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_integer_and_one_hot_labels_agree(label_smoothing):
    task = ClassificationTask(label_smoothing=label_smoothing)
    one_hot = _batch(jax.nn.one_hot(LABELS, 3))
    np.testing.assert_allclose(task.loss(LOGITS, one_hot), task.loss(LOGITS, _batch()), rtol=1e-6)
    integer_metrics = task.metrics(LOGITS, _batch())
    for name, pair in task.metrics(LOGITS, one_hot).items():
        np.testing.assert_allclose(pair, integer_metrics[name], rtol=1e-6)


def test_soft_targets_use_their_argmax_for_accuracy():
    soft = jnp.array([[0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    metrics = ClassificationTask().metrics(LOGITS, _batch(soft))
    # Classes [1, 0, 2] against argmaxes [1, 2, 0]: only row 0 is right.
    np.testing.assert_allclose(metrics["accuracy"], (1.0, 3.0))
    expected = -jnp.sum(soft * jax.nn.log_softmax(LOGITS), axis=-1)
    np.testing.assert_allclose(metrics["loss"], (jnp.sum(expected), 3.0), rtol=1e-6)


def test_top_5_accuracy():
    logits = jnp.tile(jnp.arange(6.0), (3, 1))  # top-5 classes are 1..5, top-1 is 5
    task = ClassificationTask()
    _, metrics = _loss_and_metrics(task, logits, _batch(jnp.array([0, 1, 5])))
    np.testing.assert_allclose(metrics["top_5_accuracy"], (2.0, 3.0))
    np.testing.assert_allclose(metrics["accuracy"], (1.0, 3.0))
    _, five = _loss_and_metrics(task, logits[:, :5], _batch(jnp.array([0, 1, 4])))
    np.testing.assert_allclose(five["top_5_accuracy"], (3.0, 3.0))


def test_jit_matches_eager():
    task = ClassificationTask(label_smoothing=0.1)
    batch = _batch(batch_mask=jnp.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(jax.jit(task.loss)(LOGITS, batch), task.loss(LOGITS, batch), rtol=1e-6)
    jitted = jax.jit(task.metrics)(LOGITS, batch)
    for name, pair in task.metrics(LOGITS, batch).items():
        np.testing.assert_allclose(jitted[name], pair, rtol=1e-6)
    # The task itself may be a traced argument (its float field becomes a tracer).
    traced = jax.jit(lambda t, o, b: t.loss(o, b))(task, LOGITS, batch)
    np.testing.assert_allclose(traced, task.loss(LOGITS, batch), rtol=1e-6)


def test_gradient_literal():
    _, grad = _value_and_grad(ClassificationTask(), LOGITS, _batch())
    # softmax - one_hot, divided by the 3 examples.
    expected = jnp.array([[0.25, -0.5, 0.25], [-0.75, 0.25, 0.5], [-0.4, 0.2, 0.2]]) / 3
    np.testing.assert_allclose(grad, expected, atol=1e-6)


def test_gradient_finite_for_extreme_logits():
    logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
    task = ClassificationTask(label_smoothing=0.1)
    loss, grad = _value_and_grad(task, logits, _batch(jnp.array([1, 1])))
    assert jnp.isfinite(loss) and jnp.all(jnp.isfinite(grad))


def test_low_precision_logits_give_float32_loss():
    loss = ClassificationTask().loss(LOGITS.astype(jnp.bfloat16), _batch())
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, LOSS, rtol=1e-2)


@pytest.mark.parametrize("label_smoothing", [-0.1, 1.0])
def test_bad_label_smoothing(label_smoothing):
    with pytest.raises(
        ValueError, match=rf"`label_smoothing` must be a number in \[0, 1\). Received: {label_smoothing}."
    ):
        ClassificationTask(label_smoothing=label_smoothing)


def test_bad_label_shape():
    task = ClassificationTask()
    match = r'`batch\["label"\]` must be integer labels of shape \(3,\) .* Received: shape \(3, 4\)\.'
    with pytest.raises(ValueError, match=match):
        task.loss(LOGITS, _batch(jnp.zeros((3, 4))))
    with pytest.raises(ValueError, match=r'`batch\["label"\]` must be .* Received: shape \(2,\)\.'):
        jax.jit(task.metrics)(LOGITS, _batch(jnp.array([0, 1])))


def test_float_labels_of_rank_one():
    with pytest.raises(ValueError, match=r"integer class indices. Received: dtype float32."):
        ClassificationTask().loss(LOGITS, _batch(jnp.array([1.0, 0.0, 0.0])))


def test_bad_mask_shape():
    with pytest.raises(
        ValueError, match=r'`batch\["batch_mask"\]` must have shape \(3,\), .* Received: shape \(3, 1\)\.'
    ):
        ClassificationTask().loss(LOGITS, _batch(batch_mask=jnp.ones((3, 1))))


_grad_only = jax.jit(lambda task, o, b: jax.grad(task.loss)(o, b))


@pytest.mark.parametrize(
    "label, received",
    [
        # 1-based labels for 3 classes: one-hot of 3 is all zeros, a loss of 0.
        ([2, 3, 1], r"Received: 1 value\(s\) outside it, from 3 to 3; the counted labels span \[1, 3\]\."),
        ([-1, 0, 5], r"Received: 2 value\(s\) outside it, from -1 to 5; the counted labels span \[-1, 5\]\."),
    ],
)
def test_labels_outside_the_classes_raise_with_their_range(label, received):
    task, batch = ClassificationTask(), _batch(jnp.array(label))
    match = (
        r'`batch\["label"\]` must hold class indices in \[0, 3\) \(`num_classes` = 3, the '
        r"logits' last axis\). " + received
    )
    with pytest.raises(ValueError, match=match):
        task.loss(LOGITS, batch)
    with pytest.raises(ValueError, match=match):
        task.metrics(LOGITS, batch)
    # Traced inside jit: raised by the step, also when only the gradient is used.
    with pytest.raises(Exception, match=match):
        jax.block_until_ready(_loss_and_metrics(task, LOGITS, batch))
    with pytest.raises(Exception, match=match):
        jax.block_until_ready(_grad_only(task, LOGITS, batch))


def test_padding_examples_may_hold_any_label():
    task = ClassificationTask()
    batch = _batch(jnp.array([1, 0, 7]), batch_mask=jnp.array([1.0, 1.0, 0.0]))
    loss, metrics = _loss_and_metrics(task, LOGITS, batch)
    sliced_loss, sliced = _loss_and_metrics(task, LOGITS[:2], _batch(LABELS[:2]))
    np.testing.assert_allclose(loss, sliced_loss, rtol=1e-6)
    for name, pair in metrics.items():
        np.testing.assert_allclose(pair, sliced[name], rtol=1e-6)
    assert float(task.loss(LOGITS, batch)) == pytest.approx(float(sliced_loss), rel=1e-6)


def test_missing_label_names_the_keys_the_batch_has():
    match = r'`batch` must have a "label" entry, which ClassificationTask reads. Received: a batch with keys \[\'image\', \'inputs\'\]\.'
    with pytest.raises(ValueError, match=match):
        ClassificationTask().loss(LOGITS, {"inputs": LOGITS, "image": LOGITS})


def test_label_check_under_vmap_raises_only_for_a_bad_member():
    task = ClassificationTask()
    losses = jax.jit(jax.vmap(task.loss, in_axes=(None, 0)))
    good = {"label": jnp.stack([LABELS, jnp.array([2, 2, 0])])}
    np.testing.assert_allclose(losses(LOGITS, good)[0], LOSS, rtol=1e-6)
    bad = {"label": jnp.stack([LABELS, jnp.array([2, 3, 0])])}
    with pytest.raises(Exception, match=r"Received: 1 value\(s\) outside it, from 3 to 3"):
        jax.block_until_ready(losses(LOGITS, bad))


# Logits whose class order is plain in every row: row 0 ranks classes 0 > 1 > 2 > 3,
# row 1 ranks 3 > 2 > 1 > 0, row 2 ranks 1 > 3 > 0 > 2.
RANKED = jnp.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 0.0, 2.0]])


def test_top_k_accuracy_for_any_k_literal():
    task = ClassificationTask(top_k=[3, 2, 5])  # any sequence; 5 > 4 classes is skipped
    assert task.top_k == (3, 2, 5)
    _, metrics = _loss_and_metrics(task, RANKED, _batch(jnp.array([1, 1, 3])))
    assert set(metrics) == {"accuracy", "top_2_accuracy", "top_3_accuracy", "loss"}
    # Top-1 [0, 3, 1]: none right. Top-2 {0, 1}, {3, 2}, {1, 3}: rows 0 and 2. Top-3: all.
    np.testing.assert_allclose(metrics["accuracy"], (0.0, 3.0))
    np.testing.assert_allclose(metrics["top_2_accuracy"], (2.0, 3.0))
    np.testing.assert_allclose(metrics["top_3_accuracy"], (3.0, 3.0))


def test_top_k_accuracy_matches_scikit_learn_under_padding():
    from sklearn.metrics import top_k_accuracy_score

    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(12, 7)), jnp.float32)
    label = jnp.asarray(rng.integers(0, 7, size=12), jnp.int32)
    mask = jnp.asarray([1.0] * 9 + [0.0] * 3)
    task = ClassificationTask(top_k=(1, 2, 4))
    _, metrics = _loss_and_metrics(task, logits, _batch(label, batch_mask=mask))
    summary = task.summarize(jax.device_get(metrics))
    for k in (1, 2, 4):
        expected = top_k_accuracy_score(np.asarray(label[:9]), np.asarray(logits[:9]), k=k, labels=range(7))
        assert summary[f"top_{k}_accuracy"] == pytest.approx(expected, rel=1e-6)
    assert summary["top_1_accuracy"] == summary["accuracy"]


def test_multi_hot_targets_count_any_positive_as_right():
    multi_hot = jnp.array([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    _, metrics = _loss_and_metrics(ClassificationTask(top_k=(2,)), RANKED, _batch(multi_hot))
    # Top-1 [0, 3, 1]: only row 1's is a positive. Top-2 {0, 1}, {3, 2}, {1, 3}: all hit.
    np.testing.assert_allclose(metrics["accuracy"], (1.0, 3.0))
    np.testing.assert_allclose(metrics["top_2_accuracy"], (3.0, 3.0))


def test_softmax_focal_loss_option_literal():
    task = ClassificationTask(loss_type="softmax_focal", focal_gamma=2)
    assert task.focal_gamma == 2.0
    # p_t = 1/2, 1/4 and 0.6: (1 - p_t)^2 times the cross-entropies log 2, log 4, -log 0.6.
    expected = [0.25 * math.log(2), 0.5625 * math.log(4), -0.16 * math.log(0.6)]
    loss, metrics = _loss_and_metrics(task, LOGITS, _batch())
    np.testing.assert_allclose(loss, np.mean(expected), rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], (np.sum(expected), 3.0), rtol=1e-6)
    np.testing.assert_allclose(metrics["accuracy"], (2.0, 3.0))
    # gamma 0 is the cross-entropy; smoothing applies to the focal loss's targets too.
    no_focus = ClassificationTask(loss_type="softmax_focal", focal_gamma=0.0, label_smoothing=0.3)
    np.testing.assert_allclose(
        no_focus.loss(LOGITS, _batch()),
        ClassificationTask(label_smoothing=0.3).loss(LOGITS, _batch()),
        rtol=1e-6,
    )
    _, grad = _value_and_grad(task, LOGITS, _batch())
    assert np.isfinite(grad).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"top_k": (0, 5)}, r"`top_k` must be a sequence of distinct integers >= 1. Received: \(0, 5\)."),
        ({"top_k": (5, 5)}, r"`top_k` must be .* Received: \(5, 5\)."),
        (
            {"loss_type": "focal"},
            r"`loss_type` must be one of 'softmax_cross_entropy', 'softmax_focal'. Received: 'focal'.",
        ),
        ({"focal_gamma": -1.0}, r"`focal_gamma` must be a finite number >= 0. Received: -1.0."),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassificationTask(**kwargs)
