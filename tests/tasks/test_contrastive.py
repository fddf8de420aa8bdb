"""ContrastiveTask: CLIP's InfoNCE and SigLIP's sigmoid loss, literal values and a numpy
reference, padding left out, the global batch over 8 devices, retrieval exact at any split."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import logsumexp

from scenic_eqx import loops, tasks

E = math.e


def outputs(images, texts, logit_scale=0.0, **extra):
    images, texts = jnp.asarray(images, jnp.float32), jnp.asarray(texts, jnp.float32)
    return {
        "image_embedding": images,
        "text_embedding": texts,
        "logit_scale": jnp.float32(logit_scale),
        **extra,
    }


def mask_batch(mask):
    return {"batch_mask": jnp.asarray(mask, jnp.float32)}


def numpy_info_nce(images, texts, logit_scale, mask):
    """CLIP's loss over the real rows only, written out with loops."""
    real = np.flatnonzero(np.asarray(mask) > 0)
    a = np.asarray(images, np.float64)[real]
    b = np.asarray(texts, np.float64)[real]
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    logits = np.exp(logit_scale) * a @ b.T
    total = 0.0
    for i in range(len(real)):
        total += logsumexp(logits[i]) - logits[i, i]  # image i -> its text
        total += logsumexp(logits[:, i]) - logits[i, i]  # text i -> its image
    return total / (2 * len(real))


def numpy_sigmoid(images, texts, logit_scale, bias, mask):
    """SigLIP's loss over the real rows only: -sum_j log sigmoid(z_ij logit_ij) / n."""
    real = np.flatnonzero(np.asarray(mask) > 0)
    a = np.asarray(images, np.float64)[real]
    b = np.asarray(texts, np.float64)[real]
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    logits = np.exp(logit_scale) * a @ b.T + bias
    z = 2 * np.eye(len(real)) - 1
    return np.sum(np.logaddexp(0.0, -z * logits)) / len(real)


# Three pairs: images e1, e2, e3; texts e1, e1, e3 (text 1 says what text 0 says), scale 1.
# The logits (image rows, text columns) are
#     [[1, 1, 0],
#      [0, 0, 0],
#      [0, 0, 1]]
# image -> text, row i's cross-entropy at column i:
#     row 0: log(e + e + 1) - 1;   row 1: log(1 + 1 + 1) - 0;   row 2: log(1 + 1 + e) - 1
# text -> image, the columns:
#     col 0 [1, 0, 0]: log(e + 2) - 1;   col 1 [1, 0, 0] at 1: log(e + 2) - 0;   col 2: log(e + 2) - 1
THREE = (np.eye(3), np.eye(3)[[0, 0, 2]])
THREE_IMAGE_TO_TEXT = [math.log(2 * E + 1) - 1, math.log(3), math.log(E + 2) - 1]
THREE_TEXT_TO_IMAGE = [math.log(E + 2) - 1, math.log(E + 2), math.log(E + 2) - 1]


def test_info_nce_literal_three_pairs():
    task = tasks.ContrastiveTask()
    expected = (sum(THREE_IMAGE_TO_TEXT) + sum(THREE_TEXT_TO_IMAGE)) / 6
    assert float(task.loss(outputs(*THREE), {})) == pytest.approx(expected, rel=1e-6)
    per_example = task.per_example_loss(outputs(*THREE), {})
    both = 0.5 * (np.array(THREE_IMAGE_TO_TEXT) + np.array(THREE_TEXT_TO_IMAGE))
    np.testing.assert_allclose(per_example, both, rtol=1e-6)
    # The task normalises: scaling an embedding changes nothing; logit_scale log 2 doubles the logits.
    assert float(task.loss(outputs(3 * THREE[0], 0.5 * THREE[1]), {})) == pytest.approx(expected, rel=1e-6)
    doubled = numpy_info_nce(*THREE, math.log(2.0), np.ones(3))
    assert float(task.loss(outputs(*THREE, math.log(2.0)), {})) == pytest.approx(doubled, rel=1e-6)


def test_in_batch_recall_literal_three_pairs():
    metrics = tasks.ContrastiveTask(recall_at=(1, 2)).metrics(outputs(*THREE), {})
    value = lambda name: float(metrics[name][0] / metrics[name][1])  # noqa: E731
    # Image -> text: text 1 ties text 0 for image 0 (ties count for the pair): all hits at 1.
    assert value("in_batch_image_to_text_recall_at_1") == 1.0
    # Text -> image: text 1 matches image 0 better than its own image 1: a miss at 1, a hit at 2.
    assert value("in_batch_text_to_image_recall_at_1") == pytest.approx(2 / 3)
    assert value("in_batch_text_to_image_recall_at_2") == 1.0
    assert value("scale") == pytest.approx(1.0)
    assert value("loss") == pytest.approx(float(tasks.ContrastiveTask().loss(outputs(*THREE), {})), rel=1e-6)


@pytest.mark.parametrize("loss_type", ["softmax", "sigmoid"])
def test_matches_numpy_reference_with_padding_jit_and_eager(loss_type):
    rng = np.random.default_rng(0)
    images, texts = rng.normal(size=(2, 7, 5))
    mask = np.array([1, 1, 0, 1, 1, 0, 1], np.float32)
    task = tasks.ContrastiveTask(loss_type=loss_type)
    extra = {"logit_bias": jnp.float32(-1.5)} if loss_type == "sigmoid" else {}
    out = outputs(images, texts, 0.7, **extra)
    if loss_type == "softmax":
        expected = numpy_info_nce(images, texts, 0.7, mask)
    else:
        expected = numpy_sigmoid(images, texts, 0.7, -1.5, mask)
    eager = float(task.loss(out, mask_batch(mask)))
    jitted = float(eqx.filter_jit(task.loss)(out, mask_batch(mask)))
    assert eager == pytest.approx(expected, rel=1e-5)
    assert jitted == pytest.approx(eager, rel=1e-6)


@pytest.mark.parametrize("loss_type", ["softmax", "sigmoid"])
def test_padding_is_neither_anchor_nor_negative(loss_type):
    rng = np.random.default_rng(1)
    images, texts = rng.normal(size=(2, 6, 4)).astype(np.float32)
    mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
    real = mask > 0
    task = tasks.ContrastiveTask(loss_type=loss_type, sigmoid_bias=-2.0 if loss_type == "sigmoid" else None)

    @jax.jit
    def loss_and_grads(images, texts, mask):
        loss = lambda i, t: task.loss(outputs(i, t, 1.0), mask_batch(mask))  # noqa: E731
        return jax.value_and_grad(loss, argnums=(0, 1))(images, texts)

    sliced, sliced_grads = loss_and_grads(images[real], texts[real], np.ones(real.sum()))
    # Padding rows holding anything, NaN included, change neither the loss nor the gradient.
    for fill in (0.0, 1e3, np.nan):
        padded_images, padded_texts = images.copy(), texts.copy()
        padded_images[~real], padded_texts[~real] = fill, -fill
        value, grads = loss_and_grads(padded_images, padded_texts, mask)
        assert float(value) == pytest.approx(float(sliced), rel=1e-6)
        for grad, sliced_grad in zip(grads, sliced_grads):
            np.testing.assert_allclose(grad[real], sliced_grad, rtol=1e-5, atol=1e-7)
            np.testing.assert_array_equal(grad[~real], 0.0)


@pytest.mark.parametrize("loss_type", ["softmax", "sigmoid"])
def test_all_padding_gives_zero_with_zero_gradient(loss_type):
    task = tasks.ContrastiveTask(loss_type=loss_type, sigmoid_bias=-10.0 if loss_type == "sigmoid" else None)
    images, texts = np.random.default_rng(2).normal(size=(2, 4, 3)).astype(np.float32)
    batch = mask_batch(np.zeros(4))
    value, grads = jax.jit(jax.value_and_grad(lambda o: task.loss(o, batch)))(outputs(images, texts))
    assert float(value) == 0.0
    for grad in jax.tree.leaves(grads):
        assert np.all(np.asarray(grad) == 0.0)
    metrics = jax.jit(task.metrics)(outputs(images, texts), batch)
    assert all(float(v) == 0.0 and float(n) == 0.0 for v, n in metrics.values())


def test_sigmoid_literal_two_pairs_learned_and_fixed_bias():
    # Images e1, e2 and texts e1, e2 at scale 1 and bias -1: logits [[0, -1], [-1, 0]].
    # Each image: positive pair -log sigmoid(0) = log 2; negative pair -log sigmoid(+1) = log(1 + 1/e).
    expected = math.log(2) + math.log(1 + 1 / E)
    learned = tasks.ContrastiveTask(loss_type="sigmoid")
    out = outputs(np.eye(2), np.eye(2), logit_bias=jnp.full((2,), -1.0))  # one copy per example, as vmapped
    assert float(learned.loss(out, {})) == pytest.approx(expected, rel=1e-6)
    fixed = tasks.ContrastiveTask(loss_type="sigmoid", sigmoid_bias=-1.0)
    assert float(fixed.loss(outputs(np.eye(2), np.eye(2)), {})) == pytest.approx(expected, rel=1e-6)
    for task, out_ in ((learned, out), (fixed, outputs(np.eye(2), np.eye(2)))):
        metrics = task.metrics(out_, {})
        assert float(metrics["bias"][0] / metrics["bias"][1]) == -1.0
        assert float(metrics["loss"][0] / metrics["loss"][1]) == pytest.approx(expected, rel=1e-6)
    # The bias's gradient reaches it: d/db -log sigmoid(z (l + b)) = -z sigmoid(-z (l + b)), so
    # each positive pair (l + b = 0) gives -sigmoid(0), each negative (l + b = -1) sigmoid(-1).
    grad = jax.grad(lambda b: learned.loss({**out, "logit_bias": b}, {}))(jnp.float32(-1.0))
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert float(grad) == pytest.approx((-2 * sigmoid(0.0) + 2 * sigmoid(-1.0)) / 2, rel=1e-5)


def test_scale_is_clipped_at_max_scale():
    big = outputs(*THREE, logit_scale=math.log(1000.0))
    clipped = float(tasks.ContrastiveTask().loss(big, {}))
    assert clipped == pytest.approx(numpy_info_nce(*THREE, math.log(100.0), np.ones(3)), rel=1e-5)
    free = float(tasks.ContrastiveTask(max_scale=None).loss(big, {}))
    assert free == pytest.approx(numpy_info_nce(*THREE, math.log(1000.0), np.ones(3)), rel=1e-5)


def test_registered_for_configs():
    task = tasks.create_task("contrastive", loss_type="sigmoid", recall_at=[1, 10], sigmoid_bias=-10.0)
    assert task == tasks.ContrastiveTask(loss_type="sigmoid", recall_at=(1, 10), sigmoid_bias=-10.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(loss_type="hinge"), r"`loss_type` must be one of \('softmax', 'sigmoid'\). Received: 'hinge'"),
        (dict(recall_at=(0, 5)), r"`recall_at` must be a tuple of positive integers.*Received: \(0, 5\)"),
        (dict(recall_at=(1, 1)), r"`recall_at` must not repeat a k. Received: \(1, 1\)"),
        (dict(sigmoid_bias=-10.0), r"`sigmoid_bias` applies to `loss_type='sigmoid'` only"),
        (dict(max_scale=0.0), r"`max_scale` must be positive \(or None\). Received: 0.0"),
        (dict(loss_type="sigmoid", sigmoid_bias=float("nan")), r"`sigmoid_bias` must be None or a finite"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tasks.ContrastiveTask(**kwargs)


def test_bad_outputs_are_refused():
    task = tasks.ContrastiveTask()
    with pytest.raises(
        ValueError, match=r"`outputs` must be a dict with 'image_embedding'.*Received: \['image_"
    ):
        task.loss({"image_embedding": jnp.ones((2, 3)), "logit_scale": jnp.float32(0)}, {})
    with pytest.raises(
        ValueError, match=r"both be \[batch, dim\], of one shape. Received: shapes \(2, 3\) and"
    ):
        task.loss(outputs(np.ones((2, 3)), np.ones((2, 4))), {})
    with pytest.raises(
        ValueError, match=r'`outputs\["logit_scale"\]` must be a scalar.*Received: shape \(3,\)'
    ):
        task.loss({**outputs(np.eye(2), np.eye(2)), "logit_scale": jnp.zeros(3)}, {})
    with pytest.raises(ValueError, match=r"'logit_bias' \(the sigmoid loss with `sigmoid_bias=None`"):
        tasks.ContrastiveTask(loss_type="sigmoid").loss(outputs(np.eye(2), np.eye(2)), {})
    with pytest.raises(ValueError, match=r'`batch\["batch_mask"\]` must have shape \(2,\)'):
        task.loss(outputs(np.eye(2), np.eye(2)), mask_batch(np.ones(3)))


class PairEncoder(eqx.Module):
    """A tiny dual encoder: linear maps of an image vector and a text vector."""

    image: eqx.nn.Linear
    text: eqx.nn.Linear
    logit_scale: jax.Array

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.image, self.text = eqx.nn.Linear(6, 4, key=k1), eqx.nn.Linear(5, 4, key=k2)
        self.logit_scale = jnp.float32(math.log(1 / 0.07))

    def __call__(self, inputs, *, key=None):
        return {
            "image_embedding": self.image(inputs["image"]),
            "text_embedding": self.text(inputs["text"]),
            "logit_scale": self.logit_scale,
        }


def pair_batch(size, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {
        "image": rng.normal(size=(size, 6)).astype(np.float32),
        "text": rng.normal(size=(size, 5)).astype(np.float32),
    }
    return {"inputs": inputs, "batch_mask": np.ones(size, np.float32)}


def test_loss_on_eight_devices_is_the_single_device_loss_of_the_global_batch():
    assert len(jax.devices()) == 8  # tests/conftest.py forces 8 CPU devices
    model, batch = PairEncoder(jax.random.key(0)), pair_batch(32)
    task = tasks.ContrastiveTask()

    def one_step(devices):
        return loops.fit(
            model, task, [batch], optimizer=optax.sgd(0.1), num_steps=1, key=jax.random.key(1),
            log_every=1, progress=False, mesh=loops.data_mesh(devices),
        )  # fmt: skip

    eight, eight_history = one_step(jax.devices())
    one, one_history = one_step(jax.devices()[:1])
    # Each device holds 4 rows, but the matrix is the global 32 x 32: the same loss as one device.
    assert eight_history[0]["loss"] == pytest.approx(one_history[0]["loss"], rel=1e-5)
    out = jax.vmap(model)(batch["inputs"])
    global_loss = numpy_info_nce(
        out["image_embedding"], out["text_embedding"], math.log(1 / 0.07), np.ones(32)
    )
    assert eight_history[0]["loss"] == pytest.approx(global_loss, rel=1e-5)
    # A matrix per device (4 x 4 blocks) would give another, smaller loss: the test can tell.
    per_shard = np.mean(
        [
            numpy_info_nce(
                out["image_embedding"][s], out["text_embedding"][s], math.log(1 / 0.07), np.ones(4)
            )
            for s in np.split(np.arange(32), 8)
        ]
    )
    assert abs(per_shard - global_loss) > 0.1 * global_loss
    # The gradient is the global batch's too: one step lands on the same parameters.
    for a, b in zip(
        jax.tree.leaves(eqx.filter(eight.model, eqx.is_array)),
        jax.tree.leaves(eqx.filter(one.model, eqx.is_array)),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


class Identity(eqx.Module):
    """Embeddings given in the inputs, as they are."""

    def __call__(self, inputs, *, key=None):
        return {
            "image_embedding": inputs["image"],
            "text_embedding": inputs["text"],
            "logit_scale": jnp.float32(0),
        }


def numpy_recall(images, texts, k):
    images = images / np.linalg.norm(images, axis=1, keepdims=True)
    texts = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    scores = images @ texts.T
    own = np.diagonal(scores)
    image_to_text = np.mean(np.sum(scores > own[:, None], axis=1) < k)
    text_to_image = np.mean(np.sum(scores.T > own[:, None], axis=1) < k)
    return image_to_text, text_to_image


def test_retrieval_recall_is_exact_at_any_batch_split():
    rng = np.random.default_rng(3)
    n = 37
    images = rng.normal(size=(n, 8)).astype(np.float32)
    texts = (images + 1.5 * rng.normal(size=(n, 8))).astype(np.float32)  # noisy partners: a mix of hits

    def batches(size):
        for start in range(0, n, size):
            rows = slice(start, start + size)
            real = min(size, n - start)
            pad = lambda x: np.concatenate([x[rows], np.zeros((size - real, 8), np.float32)])  # noqa: E731
            mask = np.concatenate([np.ones(real), np.zeros(size - real)]).astype(np.float32)
            yield {"inputs": {"image": pad(images), "text": pad(texts)}, "batch_mask": mask}

    task = tasks.ContrastiveTask(recall_at=(1, 5))
    results = {size: loops.evaluate(Identity(), task, list(batches(size))) for size in (8, 16)}
    for k in (1, 5):
        image_to_text, text_to_image = numpy_recall(images, texts, k)
        assert 0.0 < image_to_text < 1.0 and 0.0 < text_to_image < 1.0
        for result in results.values():
            assert result[f"image_to_text_recall_at_{k}"] == pytest.approx(image_to_text, abs=1e-12)
            assert result[f"text_to_image_recall_at_{k}"] == pytest.approx(text_to_image, abs=1e-12)
    # Recall within each batch depends on the split (fewer candidates, more hits): not exact.
    in_batch = "in_batch_image_to_text_recall_at_1"
    assert results[8][in_batch] > results[16][in_batch] > results[8]["image_to_text_recall_at_1"]


def test_retrieval_evaluator_refuses_bad_inputs():
    evaluator = tasks.RetrievalEvaluator((1,))
    with pytest.raises(ValueError, match=r"`inputs` must hold text_embedding. Received: keys"):
        evaluator.update({"image_embedding": np.ones((2, 3)), "batch_mask": np.ones(2)})
    with pytest.raises(ValueError, match=r"Received: shapes \(2, 3\), \(2, 3\) and \(3,\)"):
        evaluator.update(
            {"image_embedding": np.ones((2, 3)), "text_embedding": np.ones((2, 3)), "batch_mask": np.ones(3)}
        )
    assert math.isnan(evaluator.result()["image_to_text_recall_at_1"])  # nothing added: no recall
