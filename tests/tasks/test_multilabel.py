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
    assert set(metrics) == {"prec@1", "loss"}
    for value, normalizer in metrics.values():
        assert value.dtype == normalizer.dtype == jnp.float32
    # Top classes [0, 1, 2]: positive, negative, positive.
    np.testing.assert_allclose(metrics["prec@1"], (2.0, 3.0))
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
