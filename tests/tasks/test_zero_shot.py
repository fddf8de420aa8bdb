"""ZeroShotClassifier: prompt-ensembled class embeddings and exact zero-shot accuracy, on a
model whose embeddings are known."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import loops, tasks

VOCABULARY = ["<pad>", "a", "photo", "of", "red", "green", "blue", "sketch"]
CLASSES = ["red", "green", "blue"]
TEMPLATES = ["a photo of {}", "a {} sketch"]
WORD_VECTORS = np.array(
    [
        [0.0, 0.0, 0.0],  # <pad>: adds nothing
        [0.1, 0.1, 0.1],
        [0.3, 0.0, 0.2],
        [0.0, 0.1, 0.0],
        [2.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [0.0, 1.5, -0.5],
    ],
    np.float32,
)


def tokenize(texts):
    tokens = np.zeros((len(texts), 4), np.int32)
    for row, text in enumerate(texts):
        ids = [VOCABULARY.index(word) for word in text.split()]
        tokens[row, : len(ids)] = ids
    return tokens


class KnownEmbeddings(eqx.Module):
    """Image embedding: the pixel values; text embedding: the sum of its words' vectors.

    Dropout without a key fails outside inference mode: the classifier must switch it off.
    """

    word_vectors: jax.Array
    dropout: eqx.nn.Dropout

    def __init__(self):
        self.word_vectors = jnp.asarray(WORD_VECTORS)
        self.dropout = eqx.nn.Dropout(0.5)

    def encode_image(self, image):
        return self.dropout(image.reshape(-1))

    def encode_text(self, tokens):
        return self.dropout(jnp.sum(self.word_vectors[tokens], axis=0))


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def expected_class_embeddings():
    prompts = np.stack(
        [[WORD_VECTORS[tokenize([t.format(c)])[0]].sum(0) for t in TEMPLATES] for c in CLASSES]
    )
    return unit(unit(prompts).mean(axis=1))  # prompt ensembling: normalise, average, normalise


def test_class_embeddings_are_the_normalised_mean_of_normalised_prompts():
    tokens = tasks.ZeroShotClassifier.prompt_tokens(CLASSES, TEMPLATES, tokenize)
    assert tokens.shape == (3, 2, 4) and tokens.dtype == np.int32
    np.testing.assert_array_equal(tokens[2, 1], tokenize(["a blue sketch"])[0])
    classifier = tasks.ZeroShotClassifier(KnownEmbeddings(), tokens)
    expected = expected_class_embeddings()
    np.testing.assert_allclose(classifier.class_embeddings, expected, rtol=1e-6, atol=1e-7)
    # Averaging the raw prompt embeddings instead would give another classifier.
    raw = np.stack([[WORD_VECTORS[tokenize([t.format(c)])[0]].sum(0) for t in TEMPLATES] for c in CLASSES])
    assert np.abs(unit(raw.mean(axis=1)) - expected).max() > 0.05
    image = jnp.asarray([[[0.5, 1.0, -0.2]]])
    logits = eqx.nn.inference_mode(classifier)(image)
    np.testing.assert_allclose(logits, 100.0 * expected @ unit(np.array([0.5, 1.0, -0.2])), rtol=1e-5)


def test_zero_shot_accuracy_is_exact_over_padded_batches():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(13, 1, 1, 3)).astype(np.float32)
    predicted = np.argmax(unit(images.reshape(13, 3)) @ expected_class_embeddings().T, axis=1)
    labels = predicted.astype(np.int32)
    labels[[0, 5, 9, 12]] = (labels[[0, 5, 9, 12]] + 1) % 3  # four wrong: accuracy 9/13
    expected = 9 / 13

    def batches(size):
        for start in range(0, 13, size):
            real = min(size, 13 - start)
            pad = lambda x: np.concatenate(
                [x[start : start + real], np.zeros((size - real, *x.shape[1:]), x.dtype)]
            )  # noqa: E731
            mask = np.concatenate([np.ones(real), np.zeros(size - real)]).astype(np.float32)
            yield {"inputs": pad(images), "label": pad(labels), "batch_mask": mask}

    tokens = tasks.ZeroShotClassifier.prompt_tokens(CLASSES, TEMPLATES, tokenize)
    classifier = tasks.ZeroShotClassifier(KnownEmbeddings(), tokens)
    for size in (8, 5):  # 13 examples: 3 and 2 padding rows
        results = loops.evaluate(classifier, tasks.ClassificationTask(), list(batches(size)))
        assert results["accuracy"] == pytest.approx(expected, abs=1e-7)
        assert "top_5_accuracy" not in results  # 3 classes


def test_bad_arguments_are_refused():
    tokens = tasks.ZeroShotClassifier.prompt_tokens(CLASSES, TEMPLATES, tokenize)
    with pytest.raises(ValueError, match=r"`model` must have an `encode_image` method.*Received: Linear"):
        tasks.ZeroShotClassifier(eqx.nn.Linear(3, 3, key=jax.random.key(0)), tokens)
    with pytest.raises(ValueError, match=r"`scale` must be a positive number. Received: 0"):
        tasks.ZeroShotClassifier(KnownEmbeddings(), tokens, scale=0)
    with pytest.raises(ValueError, match=r"each with one `\{\}` for the class name. Received: \['a photo'\]"):
        tasks.ZeroShotClassifier.prompt_tokens(CLASSES, ["a photo"], tokenize)
    with pytest.raises(
        ValueError, match=r"`class_names` must be a non-empty list of strings. Received: 'red'"
    ):
        tasks.ZeroShotClassifier.prompt_tokens("red", TEMPLATES, tokenize)
    with pytest.raises(
        ValueError, match=r"integer ids \[6, context\]. Received: dtype float64, shape \(6, 4\)"
    ):
        tasks.ZeroShotClassifier.prompt_tokens(CLASSES, TEMPLATES, lambda texts: np.zeros((len(texts), 4)))
