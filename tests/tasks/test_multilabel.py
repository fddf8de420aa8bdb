import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.tasks import MultiLabelClassificationTask

L3 = math.log(3)
# sigmoid(log 3) = 3/4: a logit of +-log 3 costs log(4/3) when right and log 4 when
# wrong; a logit of 0 costs log 2 either way.
LOGITS = jnp.array([[L3, 0.0, -L3], [0.0, L3, -L3], [-L3, -L3, L3]])
LABELS = jnp.array([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
PER_EXAMPLE = [
    2 * math.log(4 / 3) + math.log(2),
    math.log(2) + 2 * math.log(4),
    2 * math.log(4 / 3) + math.log(4),
]


# Eager dispatch compiles every primitive anew for each shape; property tests on other
# shapes go through these.
_loss_and_metrics = jax.jit(lambda task, o, b: (task.loss(o, b), task.metrics(o, b)))
_value_and_grad = jax.jit(lambda task, o, b: jax.value_and_grad(task.loss)(o, b))


def _batch(label=LABELS, **extra):
    return {"inputs": jnp.zeros((len(label), 2)), "label": label, **extra}


def test_loss_literal():
    loss = MultiLabelClassificationTask().loss(LOGITS, _batch())
    assert loss.shape == () and loss.dtype == jnp.float32
    # Summed over classes, averaged over examples: 2.23196858.
    np.testing.assert_allclose(loss, np.mean(PER_EXAMPLE), rtol=1e-6)


def test_metrics_literal():
    metrics = MultiLabelClassificationTask().metrics(LOGITS, _batch())
    assert set(metrics) == {"prec@1", "precision", "recall", "loss"}
    for value, normalizer in metrics.values():
        assert value.dtype == normalizer.dtype == jnp.float32
    # Top classes [0, 1, 2]: positive, negative, positive.
    np.testing.assert_allclose(metrics["prec@1"], (2.0, 3.0))
    # Logits > 0 at (0, 0), (1, 1), (2, 2): 3 predicted positives, 2 of them labelled
    # positive, out of 5 positive labels.
    np.testing.assert_allclose(metrics["precision"], (2.0, 3.0))
    np.testing.assert_allclose(metrics["recall"], (2.0, 5.0))
    np.testing.assert_allclose(metrics["loss"], (np.sum(PER_EXAMPLE), 3.0), rtol=1e-6)


def test_mask_and_integer_labels():
    task = MultiLabelClassificationTask()
    batch = _batch(LABELS.astype(jnp.int32), batch_mask=jnp.array([0.0, 1.0, 1.0]))
    np.testing.assert_allclose(task.loss(LOGITS, batch), np.mean(PER_EXAMPLE[1:]), rtol=1e-6)
    np.testing.assert_allclose(task.metrics(LOGITS, batch)["prec@1"], (1.0, 2.0))


def test_masked_equals_sliced():
    rng = np.random.default_rng(0)
    task = MultiLabelClassificationTask()
    logits = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    labels = jnp.asarray(rng.random((4, 6)) < 0.3, jnp.float32)
    pad_logits = jnp.asarray(10 * rng.normal(size=(2, 6)), jnp.float32)
    sliced_loss, sliced = _loss_and_metrics(task, logits, _batch(labels))
    padded_loss, padded = _loss_and_metrics(
        task,
        jnp.concatenate([logits, pad_logits]),
        _batch(
            jnp.concatenate([labels, jnp.ones((2, 6))]),
            batch_mask=jnp.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0]),
        ),
    )
    np.testing.assert_allclose(padded_loss, sliced_loss, rtol=1e-6)
    for name, pair in padded.items():
        np.testing.assert_allclose(pair, sliced[name], rtol=1e-6)


def test_all_padding_gives_zero_not_nan():
    task = MultiLabelClassificationTask()
    loss, grad = _value_and_grad(task, LOGITS, _batch(batch_mask=jnp.zeros(3)))
    assert loss == 0.0
    np.testing.assert_array_equal(grad, jnp.zeros_like(LOGITS))


def test_jit_matches_eager():
    task = MultiLabelClassificationTask()
    batch = _batch(batch_mask=jnp.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(jax.jit(task.loss)(LOGITS, batch), task.loss(LOGITS, batch), rtol=1e-6)
    jitted = jax.jit(task.metrics)(LOGITS, batch)
    for name, pair in task.metrics(LOGITS, batch).items():
        np.testing.assert_allclose(jitted[name], pair, rtol=1e-6)


def test_gradient_literal_and_finite():
    task = MultiLabelClassificationTask()
    _, grad = _value_and_grad(task, LOGITS, _batch())
    # d/dz of the summed sigmoid cross-entropy is sigmoid(z) - y, over 3 examples.
    np.testing.assert_allclose(grad, (jax.nn.sigmoid(LOGITS) - LABELS) / 3, atol=1e-6)
    extreme = jnp.array([[1e4, -1e4, 0.0]])
    loss, grad = _value_and_grad(task, extreme, _batch(jnp.array([[0.0, 1.0, 1.0]])))
    np.testing.assert_allclose(loss, 2e4 + math.log(2), rtol=1e-6)
    assert jnp.all(jnp.isfinite(grad))


def test_bad_label_shape():
    task = MultiLabelClassificationTask()
    with pytest.raises(
        ValueError,
        match=r'`batch\["label"\]` must be multi-hot labels of shape \(3, 3\).* Received: shape \(3,\)\.',
    ):
        task.loss(LOGITS, _batch(jnp.array([0, 1, 2])))
    with pytest.raises(ValueError, match=r"Received: shape \(3, 4\)\."):
        jax.jit(task.metrics)(LOGITS, _batch(jnp.zeros((3, 4))))


@pytest.mark.parametrize("bad_value", [2.0, -1.0])
def test_labels_outside_zero_one_raise_padding_may_hold_anything(bad_value):
    task = MultiLabelClassificationTask()
    labels = jnp.zeros((3, 3)).at[1, 2].set(bad_value)
    match = (
        r'`batch\["label"\]` must hold multi-hot or soft labels in \[0, 1\]. Received: 1 '
        rf"value\(s\) outside it, from {bad_value:g} to {bad_value:g}"
    )
    with pytest.raises(ValueError, match=match):
        task.loss(LOGITS, _batch(labels))
    with pytest.raises(Exception, match=match):
        jax.block_until_ready(jax.jit(task.metrics)(LOGITS, _batch(labels)))
    padded = _batch(labels, batch_mask=jnp.array([1.0, 0.0, 1.0]))
    assert jnp.isfinite(jax.block_until_ready(jax.jit(task.loss)(LOGITS, padded)))


def test_label_weights_literal():
    task = MultiLabelClassificationTask(label_weights=[2, 0, 1])
    assert task.label_weights == (2.0, 0.0, 1.0)
    # Per-class costs (see PER_EXAMPLE) weighted 2, 0, 1:
    expected = [
        2 * math.log(4 / 3) + math.log(4 / 3),  # row 0: log(4/3), log 2, log(4/3)
        2 * math.log(2) + math.log(4),  # row 1: log 2, log 4, log 4
        2 * math.log(4 / 3) + math.log(4 / 3),  # row 2: log(4/3), log 4, log(4/3)
    ]
    loss, metrics = _loss_and_metrics(task, LOGITS, _batch())
    np.testing.assert_allclose(loss, np.mean(expected), rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], (np.sum(expected), 3.0), rtol=1e-6)


def test_sigmoid_focal_loss_option_literal():
    task = MultiLabelClassificationTask(loss_type="sigmoid_focal", focal_alpha=0.25, focal_gamma=2)

    def focal(p_t, positive):
        return (0.25 if positive else 0.75) * (1 - p_t) ** 2 * -math.log(p_t)

    # Logits +-log 3 give p_t 3/4 when right and 1/4 when wrong; logit 0 gives 1/2.
    expected = [
        focal(3 / 4, True) + focal(1 / 2, False) + focal(3 / 4, False),
        focal(1 / 2, True) + focal(1 / 4, False) + focal(1 / 4, True),
        focal(3 / 4, False) + focal(1 / 4, True) + focal(3 / 4, True),
    ]
    loss, metrics = _loss_and_metrics(task, LOGITS, _batch())
    np.testing.assert_allclose(loss, np.mean(expected), rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], (np.sum(expected), 3.0), rtol=1e-6)
    # Label weights weigh the focal terms too.
    weighted = MultiLabelClassificationTask(loss_type="sigmoid_focal", label_weights=(0.0, 0.0, 1.0))
    np.testing.assert_allclose(
        weighted.loss(LOGITS, _batch()),
        np.mean([focal(3 / 4, False), focal(1 / 4, True), focal(3 / 4, True)]),
        rtol=1e-6,
    )


def test_precision_at_k_literal():
    task = MultiLabelClassificationTask(precision_at_k=(1, 3))
    _, metrics = _loss_and_metrics(task, LOGITS, _batch())
    # The top 3 are all 3 classes: the fraction of positives, 1/3 + 2/3 + 2/3.
    np.testing.assert_allclose(metrics["prec@3"], (5 / 3, 3.0), rtol=1e-6)
    np.testing.assert_allclose(metrics["prec@1"], (2.0, 3.0))


def test_precision_at_k_precision_and_recall_match_references_under_padding():
    from sklearn.metrics import precision_score, recall_score

    rng = np.random.default_rng(1)
    logits = jnp.asarray(2 * rng.normal(size=(10, 6)), jnp.float32)
    labels = jnp.asarray(rng.random((10, 6)) < 0.4, jnp.int32)
    mask = jnp.asarray([1.0] * 7 + [0.0] * 3)
    task = MultiLabelClassificationTask(precision_at_k=(2, 4))
    _, metrics = _loss_and_metrics(task, logits, _batch(labels, batch_mask=mask))
    summary = task.summarize(jax.device_get(metrics))
    real_logits, real_labels = np.asarray(logits[:7]), np.asarray(labels[:7])
    predicted = real_logits > 0  # sigmoid > 0.5
    assert summary["precision"] == pytest.approx(precision_score(real_labels, predicted, average="micro"))
    assert summary["recall"] == pytest.approx(recall_score(real_labels, predicted, average="micro"))
    for k in (2, 4):
        top = np.argsort(-real_logits, axis=-1)[:, :k]
        expected = np.take_along_axis(real_labels, top, axis=-1).mean(-1).mean()
        assert summary[f"prec@{k}"] == pytest.approx(expected, rel=1e-6)


def test_precision_without_predicted_positives_is_nan():
    task = MultiLabelClassificationTask()
    _, metrics = _loss_and_metrics(task, -jnp.abs(LOGITS) - 1.0, _batch())
    summary = task.summarize(jax.device_get(metrics))
    assert math.isnan(summary["precision"]) and summary["recall"] == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"label_weights": (-1.0, 1.0)}, r"`label_weights` must be None or .* Received: \(-1.0, 1.0\)."),
        ({"label_weights": ()}, r"`label_weights` must be None or .* Received: \(\)."),
        ({"precision_at_k": (0,)}, r"`precision_at_k` must be a sequence of distinct integers >= 1"),
        ({"loss_type": "focal"}, r"`loss_type` must be one of 'sigmoid_cross_entropy', 'sigmoid_focal'"),
        ({"focal_alpha": 2.0}, r"`focal_alpha` must be None \(no balancing\) or a number in \[0, 1\]"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiLabelClassificationTask(**kwargs)


def test_options_that_do_not_fit_the_logits():
    with pytest.raises(
        ValueError, match=r"`label_weights` must have one entry per class of the logits \(3\)"
    ):
        MultiLabelClassificationTask(label_weights=(1.0, 1.0)).loss(LOGITS, _batch())
    match = r"`precision_at_k` must not exceed the number of classes of the logits \(3\). Received: \(1, 4\)."
    with pytest.raises(ValueError, match=match):
        MultiLabelClassificationTask(precision_at_k=(1, 4)).metrics(LOGITS, _batch())
