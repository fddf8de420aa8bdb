"""Transfer evaluators: few-shot ridge regression and the linear probe against scikit-learn."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tiny_models import BatchNormMLP, DropoutMLP, make_batches, run

from scenic_eqx import loops
from scenic_eqx.data import pad_batch

NUM_TRAIN = 1000  # of the 1797 digits; the rest are the test set


class RandomProjection(eqx.Module):
    """A frozen "model" whose pre-logits are a fixed random projection of the 8x8 pixels."""

    weight: jax.Array

    def __init__(self, dim: int, *, key):
        self.weight = jax.random.normal(key, (dim, 64)) / 8.0

    def features(self, x):
        return {"pre_logits": self.weight @ jnp.ravel(x)}


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    return {
        "train": (images[:NUM_TRAIN], labels[:NUM_TRAIN]),
        "test": (images[NUM_TRAIN:], labels[NUM_TRAIN:]),
    }


def batched(images, labels, batch_size):
    """Padded batches of `batch_size`, the last one completed with `batch_mask` 0."""
    return [
        pad_batch({"inputs": images[i : i + batch_size], "label": labels[i : i + batch_size]}, batch_size)
        for i in range(0, len(labels), batch_size)
    ]


@pytest.fixture(scope="module")
def projected(digits):
    """The digits' batches, the projection model and its features `x @ weight^T`."""
    model = RandomProjection(32, key=jax.random.key(0))
    weight = np.asarray(model.weight, np.float64)
    split = {}
    for name, (images, labels) in digits.items():
        split[name] = (batched(images, labels, 96), images.reshape(len(images), -1) @ weight.T, labels)
    return model, split


def sklearn_standardized(features):
    return StandardScaler().fit_transform(np.asarray(features, np.float64))


def test_extract_features_are_the_pre_logits_of_the_real_examples(projected):
    model, split = projected
    batches, expected, labels = split["test"]
    assert batches[-1]["batch_mask"].sum() < 96  # the last batch is padded
    features, got_labels = loops.extract_features(model, batches)
    assert features.dtype == np.float32 and features.shape == expected.shape
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got_labels, labels)
    one_device, _ = loops.extract_features(model, batches, mesh=loops.data_mesh(jax.devices()[:1]))
    np.testing.assert_allclose(one_device, features, rtol=1e-6, atol=1e-6)


def test_fewshot_matches_sklearn_ridge(projected):
    model, split = projected
    evaluator = loops.FewShotLinearEvaluator(split["train"][0], split["test"][0], shots=(1, 5, 10))
    results = evaluator(model)
    assert set(results) == {"1shot_accuracy", "5shot_accuracy", "10shot_accuracy"}

    train_features, train_labels = loops.extract_features(model, split["train"][0])
    test_features, test_labels = loops.extract_features(model, split["test"][0])
    for k, indices in evaluator.shot_indices(train_labels, 10).items():
        np.testing.assert_array_equal(np.bincount(train_labels[indices], minlength=10), np.full(10, k))
        x, y = train_features[indices].astype(np.float64), train_labels[indices]
        ours = loops.fit_ridge_classifier(x, y, num_classes=10, l2_reg=evaluator.l2_reg)
        reference = make_pipeline(StandardScaler(), Ridge(alpha=evaluator.l2_reg))
        reference.fit(x, 2.0 * np.eye(10)[y] - 1.0)
        np.testing.assert_allclose(ours.weights, reference[-1].coef_.T, atol=1e-9)
        np.testing.assert_allclose(ours.bias, reference[-1].intercept_, atol=1e-9)
        sklearn_accuracy = np.mean(reference.predict(test_features).argmax(axis=1) == test_labels)
        assert results[f"{k}shot_accuracy"] == sklearn_accuracy
    # The projection keeps the digits apart: far above chance (0.1) from a few examples.
    assert results["1shot_accuracy"] < results["10shot_accuracy"]
    assert results["10shot_accuracy"] > 0.7, results


def test_ridge_dual_and_primal_forms_agree():
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(12, 30)), np.arange(12) % 3
    dual = loops.fit_ridge_classifier(x, labels, num_classes=3, l2_reg=2.0)  # 12 examples < 30 features
    reference = Ridge(alpha=2.0).fit(sklearn_standardized(x), 2.0 * np.eye(3)[labels] - 1.0)
    np.testing.assert_allclose(dual.weights, reference.coef_.T, atol=1e-10)
    np.testing.assert_allclose(dual.bias, reference.intercept_, atol=1e-10)


def test_linear_probe_matches_sklearn_logistic_regression(projected):
    model, split = projected
    l2_reg = 1e-3
    train_features, train_labels = loops.extract_features(model, split["train"][0])
    test_features, test_labels = loops.extract_features(model, split["test"][0])
    ours, steps = loops.fit_logistic_regression(
        train_features, train_labels, num_classes=10, l2_reg=l2_reg, tolerance=1e-7
    )
    assert steps < 1000
    # scikit-learn minimises C * sum(cross-entropy) + ||W||^2 / 2: ours divided by C * n.
    reference = make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0 / (l2_reg * NUM_TRAIN), tol=1e-10, max_iter=10_000)
    ).fit(train_features.astype(np.float64), train_labels)
    coef = reference[-1].coef_.T
    np.testing.assert_allclose(ours.weights, coef, atol=1e-4 * np.abs(coef).max())
    # The softmax ignores a shift of every bias: compare them centred.
    np.testing.assert_allclose(
        ours.bias - ours.bias.mean(), reference[-1].intercept_ - reference[-1].intercept_.mean(), atol=1e-4
    )
    probabilities = jax.nn.softmax(ours.logits(test_features), axis=-1)
    np.testing.assert_allclose(probabilities, reference.predict_proba(test_features), atol=1e-4)

    evaluator = loops.LinearProbeEvaluator(split["train"][0], split["test"][0], l2_reg=l2_reg, tolerance=1e-7)
    accuracy = evaluator(model)["accuracy"]
    assert (
        accuracy == ours.accuracy(test_features, test_labels) == reference.score(test_features, test_labels)
    )
    assert accuracy > 0.85


def test_linear_probe_warns_when_it_stops_before_converging(projected):
    model, split = projected
    features, labels = loops.extract_features(model, split["train"][0])  # the shape compiled above
    with pytest.warns(RuntimeWarning, match=r"did not converge in `max_steps` \(=3\)"):
        _, steps = loops.fit_logistic_regression(features, labels, num_classes=10, l2_reg=1e-3, max_steps=3)
    assert steps == 3


def test_shots_are_fixed_by_the_seed_and_nested(projected):
    model, split = projected
    labels = loops.extract_features(model, split["train"][0])[1]
    make = lambda seed: loops.FewShotLinearEvaluator([], [], shots=(2, 5), seed=seed)
    first, again, other = (
        make(0).shot_indices(labels, 10),
        make(0).shot_indices(labels, 10),
        make(1).shot_indices(labels, 10),
    )
    for k in (2, 5):
        np.testing.assert_array_equal(first[k], again[k])
        assert not np.array_equal(first[k], other[k])
    assert set(first[2]) < set(first[5])
    evaluator = loops.FewShotLinearEvaluator(split["train"][0], split["test"][0], shots=(2, 5))
    assert evaluator(model) == evaluator(model)


def test_padding_rows_are_ignored(digits, projected):
    model, split = projected
    images, labels = digits["test"]
    # Padding rows full of other images and labels: with `batch_mask` 0 they count nowhere.
    junk = [
        {
            "inputs": np.concatenate([images[i : i + 50], images[:14]]),
            "label": np.concatenate([labels[i : i + 50], np.full(14, 9)]),
            "batch_mask": np.concatenate([np.ones(len(labels[i : i + 50])), np.zeros(14)]).astype(np.float32),
        }
        for i in range(0, len(labels), 50)
    ]
    junk[-1] = {name: value[: len(labels) % 50 + 14] for name, value in junk[-1].items()}
    features, got_labels = loops.extract_features(model, junk)
    reference, reference_labels = loops.extract_features(model, split["test"][0])
    np.testing.assert_allclose(features, reference, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got_labels, reference_labels)
    train = split["train"][0]
    fewshot = lambda test: loops.FewShotLinearEvaluator(train, test, shots=(3,))(model)
    assert fewshot(junk) == fewshot(split["test"][0])


def test_stateful_model_and_default_pre_logits_with_state(getkey):
    mlp = BatchNormMLP(key=getkey())
    state = eqx.nn.State(mlp)
    batches = make_batches(2, batch_size=12)
    hidden = lambda model, x, model_state: jax.nn.relu(model.norm(model.hidden(x), model_state)[0])
    features, _ = loops.extract_features(mlp, batches, representation_fn=hidden, model_state=state)
    inference = eqx.nn.inference_mode(mlp)
    x = np.concatenate([b["inputs"] for b in batches])
    expected = jax.vmap(lambda v: hidden(inference, v, state))(x)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)

    # The default representation of a model with state: `features(x, state) -> (dict, state)`.
    pooled, _ = loops.extract_features(_StatefulFeatures(mlp), batches, model_state=state)
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)


def test_evaluators_run_periodically_in_fit(tmp_path, getkey):
    hidden = lambda model, x: jax.nn.relu(model.hidden(x))
    train, test = make_batches(3, batch_size=16, seed=3), make_batches(2, batch_size=16, seed=4)
    fewshot = loops.FewShotLinearEvaluator(train, test, shots=(1, 5), representation_fn=hidden)
    probe = loops.LinearProbeEvaluator(train, test, l2_reg=1e-2, representation_fn=hidden)
    evaluations = [
        loops.PeriodicEvaluation("fewshot", every=3, evaluate=fewshot),
        loops.PeriodicEvaluation("probe", every=6, evaluate=probe),
    ]
    state, history = run(DropoutMLP(key=getkey()), 6, log_every=2, workdir=tmp_path, evaluations=evaluations)
    by_step = {record["step"]: record for record in history}
    assert {"fewshot_1shot_accuracy", "fewshot_5shot_accuracy"} <= set(by_step[3])
    assert "probe_accuracy" not in by_step[3] and "probe_accuracy" in by_step[6]
    final = {**fewshot(state.model), **probe(state.model)}
    assert by_step[6]["fewshot_5shot_accuracy"] == final["5shot_accuracy"]
    assert by_step[6]["probe_accuracy"] == final["accuracy"]
    assert final["accuracy"] > 0.5  # three classes; the probe reads the trained hidden layer
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "fewshot_1shot_accuracy" in r] == [3, 6]


def test_too_few_examples_of_a_class_is_an_error(projected):
    model, split = projected
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    evaluator = loops.FewShotLinearEvaluator([], [], shots=(1, 3))
    with pytest.raises(ValueError, match=r"Class 1 has 2 examples in `train_data`, fewer than the 3 shots"):
        evaluator.shot_indices(labels, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shots": ()}, "`shots` must be a non-empty sequence"),
        ({"shots": 5}, "`shots` must be a non-empty sequence"),
        ({"shots": (1, 0)}, r"`shots` must be a positive integer. Received: 0"),
        ({"shots": (5, 5)}, "`shots` must not repeat"),
        ({"l2_reg": 0.0}, r"`l2_reg` must be a positive number. Received: 0.0"),
        ({"seed": 1.5}, r"`seed` must be an integer. Received: 1.5"),
        ({"num_classes": 0}, r"`num_classes` must be a positive integer"),
    ],
)
def test_fewshot_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        loops.FewShotLinearEvaluator([], [], **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"l2_reg": -1.0}, r"`l2_reg` must be a positive number. Received: -1.0"),
        ({"max_steps": 0}, r"`max_steps` must be a positive integer. Received: 0"),
        ({"tolerance": "small"}, r"`tolerance` must be a non-negative number. Received: 'small'"),
        ({"train_data": 3}, r"`train_data` must be an iterable of batches .* Received: int"),
        ({"test_data": None}, r"`test_data` must be an iterable of batches .* Received: NoneType"),
    ],
)
def test_linear_probe_arguments_are_checked(kwargs, match):
    data = {"train_data": [], "test_data": []}
    data.update({name: kwargs.pop(name) for name in list(kwargs) if name in data})
    with pytest.raises(ValueError, match=match):
        loops.LinearProbeEvaluator(**data, **kwargs)


def test_bad_data_is_an_error(projected):
    model, split = projected
    batch = split["test"][0][0]
    probe = lambda train, test, **kw: loops.LinearProbeEvaluator(train, test, **kw).evaluate_features
    features = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"`label` must hold integer class indices of shape \[batch\]"):
        loops.extract_features(model, [{**batch, "label": batch["label"].astype(np.float32)}])
    with pytest.raises(ValueError, match=r"`representation_fn` is needed: the model \(DropoutMLP\)"):
        loops.extract_features(DropoutMLP(key=jax.random.key(0)), [batch])
    with pytest.raises(ValueError, match="at least one batch. Received: an empty iterable"):
        loops.extract_features(model, [])
    with pytest.raises(
        ValueError, match=r"must return a dict with a 'pre_logits' entry.*Received: \['logits'\]"
    ):
        loops.extract_features(_LogitsOnly(), [batch])
    with pytest.raises(
        ValueError, match=r"must return a vector \[dim\] per example. Received: shape \(8, 8, 1\)"
    ):
        loops.extract_features(model, [batch], representation_fn=lambda m, x: x)
    with pytest.raises(ValueError, match=r"`test_data` must hold class indices in \[0, 3\)"):
        probe([], [], num_classes=3)(features, np.array([0, 1, 2, 0]), features, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"`train_data` must hold at least one real example"):
        probe([], [])(features[:0], np.zeros(0, np.int64), features, np.arange(4))


@pytest.mark.parametrize(
    ("fit", "kwargs", "match"),
    [
        ("ridge", {"features": np.zeros(4)}, r"`features` must be `\[examples, dim\]`.*shape \(4,\)"),
        ("ridge", {"labels": np.zeros(4)}, r"`labels` integer class indices.*dtype float64"),
        ("ridge", {"labels": np.array([0, 1, 2, 5])}, r"`labels` must hold class indices in \[0, 3\)"),
        ("ridge", {"num_classes": 0}, r"`num_classes` must be a positive integer. Received: 0"),
        ("ridge", {"l2_reg": 0.0}, r"`l2_reg` must be a positive number. Received: 0.0"),
        ("probe", {"l2_reg": -1}, r"`l2_reg` must be a positive number. Received: -1"),
        ("probe", {"max_steps": 0}, r"`max_steps` must be a positive integer. Received: 0"),
        ("probe", {"tolerance": -1.0}, r"`tolerance` must be a non-negative number. Received: -1.0"),
    ],
)
def test_linear_fits_check_their_arguments(fit, kwargs, match):
    arguments = {"features": np.zeros((4, 2)), "labels": np.arange(4) % 3, "num_classes": 3, "l2_reg": 1.0}
    function = loops.fit_ridge_classifier if fit == "ridge" else loops.fit_logistic_regression
    with pytest.raises(ValueError, match=match):
        function(**{**arguments, **kwargs})


class _StatefulFeatures(eqx.Module):
    """`BatchNormMLP`'s hidden layer as the pre-logits of a `features(x, state)` method."""

    mlp: BatchNormMLP

    def features(self, x, state):
        h, state = self.mlp.norm(self.mlp.hidden(x), state)
        return {"pre_logits": jax.nn.relu(h)}, state


class _LogitsOnly(eqx.Module):
    def features(self, x):
        return {"logits": jnp.ravel(x)[:3]}
