import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.tasks import EncoderDecoderTask, create_task

# Softmax probabilities of the rows: A = [.25, .5, .25], B = [.25, .25, .5],
# C = [.6, .2, .2]. Example 0 is A, B, C with labels 1, 2, pad: both real tokens right,
# cross-entropies log 2, log 2. Example 1 is C, A, B with labels 1, 1, 2: argmaxes
# 0, 1, 2, so one token wrong; cross-entropies log 5, log 2, log 2.
A, B, C = (jnp.log(jnp.array(p)) for p in ([1.0, 2.0, 1.0], [1.0, 1.0, 2.0], [3.0, 1.0, 1.0]))
LOGITS = jnp.stack([jnp.stack([A, B, C]), jnp.stack([C, A, B])])
LABELS = jnp.array([[1, 2, 0], [1, 1, 2]])
NLL_SUM = 4 * math.log(2) + math.log(5)  # log 80, over 5 real tokens

_loss_and_metrics = jax.jit(lambda task, o, b: (task.loss(o, b), task.metrics(o, b)))
_value_and_grad = jax.jit(lambda task, o, b: jax.value_and_grad(task.loss)(o, b))


def _batch(label=LABELS, **extra):
    return {"label": label, **extra}


def test_loss_literal():
    loss = EncoderDecoderTask().loss(LOGITS, _batch())
    assert loss.shape == () and loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, NLL_SUM / 5, rtol=1e-6)


def test_metrics_literal():
    metrics = EncoderDecoderTask().metrics(LOGITS, _batch())
    assert set(metrics) == {"token_accuracy", "sequence_accuracy", "loss", "nll"}
    for value, normalizer in metrics.values():
        assert value.shape == normalizer.shape == ()
        assert value.dtype == normalizer.dtype == jnp.float32
    np.testing.assert_allclose(metrics["token_accuracy"], (4.0, 5.0))
    np.testing.assert_allclose(metrics["sequence_accuracy"], (1.0, 2.0))
    np.testing.assert_allclose(metrics["loss"], (NLL_SUM, 5.0), rtol=1e-6)
    np.testing.assert_allclose(metrics["nll"], (NLL_SUM, 5.0), rtol=1e-6)


def test_summarize_adds_perplexity_of_the_summed_loss():
    task = EncoderDecoderTask()
    # Sums over two batches of 3 and 2 tokens: perplexity is exp of the pooled mean,
    # 80 ** (1/5), not a mean of the two batches' perplexities.
    # (`loops` hand over `jax.device_get` of the sums: 0-d numpy arrays.)
    nll_sum = np.float32(NLL_SUM - math.log(5)) + np.float32(math.log(5))
    totals = {
        "token_accuracy": (np.asarray(4.0, np.float32), np.asarray(5.0, np.float32)),
        "nll": (np.asarray(nll_sum), np.asarray(3.0 + 2.0, np.float32)),
    }
    results = task.summarize(totals)
    assert set(results) == {"token_accuracy", "nll", "perplexity"}
    assert all(isinstance(v, float) for v in results.values())
    assert results["token_accuracy"] == pytest.approx(0.8)
    assert results["perplexity"] == pytest.approx(80 ** (1 / 5), rel=1e-6)


def test_label_smoothing_literal():
    # alpha = 0.3 over 3 classes: targets 0.8 on the label, 0.1 elsewhere. Rows A and B
    # against their argmax label cost 1.2 log 2; row C against label 1 costs
    # -(0.1 log .6 + 0.9 log .2).
    smoothed_sum = 4 * 1.2 * math.log(2) - (0.1 * math.log(0.6) + 0.9 * math.log(0.2))
    task = EncoderDecoderTask(label_smoothing=0.3)
    np.testing.assert_allclose(task.loss(LOGITS, _batch()), smoothed_sum / 5, rtol=1e-6)
    metrics = task.metrics(LOGITS, _batch())
    np.testing.assert_allclose(metrics["loss"], (smoothed_sum, 5.0), rtol=1e-6)
    # The likelihood, hence the perplexity, and the accuracies ignore smoothing.
    np.testing.assert_allclose(metrics["nll"], (NLL_SUM, 5.0), rtol=1e-6)
    np.testing.assert_allclose(metrics["token_accuracy"], (4.0, 5.0))


def test_pad_id_marks_padding():
    # With pad_id 2, example 0 keeps rows A, C with labels 1, 0 (both right) and
    # example 1 rows C, A with labels 1, 1 (wrong, right).
    metrics = EncoderDecoderTask(pad_id=2).metrics(LOGITS, _batch())
    np.testing.assert_allclose(metrics["token_accuracy"], (3.0, 4.0))
    np.testing.assert_allclose(metrics["sequence_accuracy"], (1.0, 2.0))
    nll = 2 * math.log(2) + math.log(5 / 3) + math.log(5)
    np.testing.assert_allclose(metrics["nll"], (nll, 4.0), rtol=1e-6)


def test_batch_mask_drops_examples():
    task = EncoderDecoderTask()
    batch = _batch(batch_mask=jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(task.loss(LOGITS, batch), math.log(2), rtol=1e-6)
    metrics = task.metrics(LOGITS, batch)
    np.testing.assert_allclose(metrics["token_accuracy"], (2.0, 2.0))
    np.testing.assert_allclose(metrics["sequence_accuracy"], (1.0, 1.0))


def test_missing_mask_means_all_ones():
    task = EncoderDecoderTask()
    with_mask = _batch(batch_mask=jnp.ones(2))
    assert task.loss(LOGITS, _batch()) == task.loss(LOGITS, with_mask)
    for name, pair in task.metrics(LOGITS, _batch()).items():
        np.testing.assert_array_equal(pair, task.metrics(LOGITS, with_mask)[name])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_masked_equals_sliced(label_smoothing):
    """Padding examples (mask 0) and padding tokens (label pad_id) change nothing."""
    rng = np.random.default_rng(0)
    task = EncoderDecoderTask(pad_id=3, label_smoothing=label_smoothing)
    logits = jnp.asarray(rng.normal(size=(4, 5, 7)), jnp.float32)
    label = jnp.asarray(rng.choice([0, 1, 2, 4, 5, 6], size=(4, 5)), jnp.int32)
    sliced_loss, sliced = _loss_and_metrics(task, logits, _batch(label))
    # Two more positions of padding tokens and two padding examples with random labels.
    padded_logits = jnp.asarray(10 * rng.normal(size=(6, 7, 7)), jnp.float32)
    padded_logits = padded_logits.at[:4, :5].set(logits)
    padded_label = jnp.asarray(rng.integers(0, 7, size=(6, 7)), jnp.int32)
    padded_label = padded_label.at[:4, :5].set(label).at[:4, 5:].set(3)
    mask = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    padded_loss, padded = _loss_and_metrics(task, padded_logits, _batch(padded_label, batch_mask=mask))
    np.testing.assert_allclose(padded_loss, sliced_loss, rtol=1e-6)
    assert set(padded) == set(sliced)
    for name in sliced:
        np.testing.assert_allclose(padded[name], sliced[name], rtol=1e-6)


def test_all_padding_gives_zero_not_nan():
    task = EncoderDecoderTask()
    batch = _batch(batch_mask=jnp.zeros(2))
    loss, grad = _value_and_grad(task, LOGITS, batch)
    assert loss == 0.0
    np.testing.assert_array_equal(grad, jnp.zeros_like(LOGITS))
    for value, normalizer in task.metrics(LOGITS, batch).values():
        assert value == 0.0 and normalizer == 0.0


def test_gradient_literal_and_zero_on_padding():
    _, grad = _value_and_grad(EncoderDecoderTask(), LOGITS, _batch())
    # softmax - one_hot for each real token, divided by the 5 real tokens.
    expected = (
        jnp.array(
            [
                [[0.25, -0.5, 0.25], [0.25, 0.25, -0.5], [0.0, 0.0, 0.0]],
                [[0.6, -0.8, 0.2], [0.25, -0.5, 0.25], [0.25, 0.25, -0.5]],
            ]
        )
        / 5
    )
    np.testing.assert_allclose(grad, expected, atol=1e-6)


def test_gradient_finite_for_extreme_logits():
    logits = jnp.array([[[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]]])
    task = EncoderDecoderTask(label_smoothing=0.1)
    loss, grad = _value_and_grad(task, logits, _batch(jnp.array([[1, 2]])))
    assert jnp.isfinite(loss) and jnp.all(jnp.isfinite(grad))


def test_jit_matches_eager():
    task = EncoderDecoderTask(label_smoothing=0.1)
    batch = _batch(batch_mask=jnp.array([1.0, 1.0]))
    eager = task.loss(LOGITS, batch)
    np.testing.assert_allclose(jax.jit(task.loss)(LOGITS, batch), eager, rtol=1e-6)
    jitted = jax.jit(task.metrics)(LOGITS, batch)
    for name, pair in task.metrics(LOGITS, batch).items():
        np.testing.assert_allclose(jitted[name], pair, rtol=1e-6)
    # The task itself may be a traced argument (its fields become tracers).
    traced, _ = _loss_and_metrics(task, LOGITS, batch)
    np.testing.assert_allclose(traced, task.loss(LOGITS, batch), rtol=1e-6)


def test_low_precision_logits_give_float32_loss():
    loss = EncoderDecoderTask().loss(LOGITS.astype(jnp.bfloat16), _batch())
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, NLL_SUM / 5, rtol=1e-2)


def test_registered():
    task = create_task("encoder_decoder", pad_id=2, label_smoothing=0.1)
    assert task == EncoderDecoderTask(pad_id=2, label_smoothing=0.1)


@pytest.mark.parametrize("label_smoothing", [-0.1, 1.0])
def test_bad_label_smoothing(label_smoothing):
    with pytest.raises(
        ValueError, match=rf"`label_smoothing` must be a number in \[0, 1\). Received: {label_smoothing}."
    ):
        EncoderDecoderTask(label_smoothing=label_smoothing)


def test_bad_label_shape():
    task = EncoderDecoderTask()
    match = r'`batch\["label"\]` must have shape \(2, 3\), .* \(2, 3, 3\). Received: shape \(2, 2\)\.'
    with pytest.raises(ValueError, match=match):
        task.loss(LOGITS, _batch(LABELS[:, :2]))
    with pytest.raises(ValueError, match=r"Received: shape \(2,\)\."):
        jax.jit(task.metrics)(LOGITS, _batch(LABELS[:, 0]))


def test_float_labels():
    with pytest.raises(ValueError, match=r"integer token ids. Received: dtype float32."):
        EncoderDecoderTask().loss(LOGITS, _batch(LABELS.astype(jnp.float32)))


def test_bad_mask_shape():
    with pytest.raises(
        ValueError, match=r'`batch\["batch_mask"\]` must have shape \(2,\), .* Received: shape \(2, 1\)\.'
    ):
        EncoderDecoderTask().loss(LOGITS, _batch(batch_mask=jnp.ones((2, 1))))


def test_token_ids_outside_the_vocabulary_raise_padding_may_hold_anything():
    task = EncoderDecoderTask()
    labels = LABELS.at[1, 2].set(3)  # vocabulary of 3
    match = (
        r'`batch\["label"\]` must hold token ids in \[0, 3\) \(`num_classes` = 3, .*\) or '
        r"`pad_id`, on real tokens .* Received: 1 value\(s\) outside it, from 3 to 3"
    )
    with pytest.raises(ValueError, match=match):
        task.loss(LOGITS, _batch(labels))
    with pytest.raises(Exception, match=match):
        jax.block_until_ready(_loss_and_metrics(task, LOGITS, _batch(labels)))
    padded = _batch(labels, batch_mask=jnp.array([1.0, 0.0]))
    loss, _ = jax.block_until_ready(_loss_and_metrics(task, LOGITS, padded))
    assert jnp.isfinite(loss)
