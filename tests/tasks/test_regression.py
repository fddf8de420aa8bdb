import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scenic_eqx import data, loops, nn, tasks
from scenic_eqx.tasks import RegressionTask

# Errors [[1, -2], [0, 3], [-4, 0]]: per-example squared errors (1 + 4) / 2, 9 / 2, 16 / 2
# and absolute errors 3 / 2, 3 / 2, 4 / 2.
OUTPUTS = jnp.array([[1.0, 0.0], [2.0, 5.0], [-4.0, 1.0]])
LABELS = jnp.array([[0.0, 2.0], [2.0, 2.0], [0.0, 1.0]])
MSE = np.array([2.5, 4.5, 8.0])
MAE = np.array([1.5, 1.5, 2.0])

_loss_and_metrics = jax.jit(lambda task, o, b: (task.loss(o, b), task.metrics(o, b)))
_value_and_grad = jax.jit(lambda task, o, b: jax.value_and_grad(task.loss)(o, b))


def _reference(outputs, labels, mask, huber_delta=None):
    """numpy: per-example means over elements, summed over real examples."""
    errors = np.asarray(outputs, np.float64) - np.asarray(labels, np.float64)
    errors = errors.reshape(len(errors), -1)
    if huber_delta is None:
        losses = errors**2
    else:
        small = np.abs(errors) <= huber_delta
        losses = np.where(small, 0.5 * errors**2, huber_delta * (np.abs(errors) - 0.5 * huber_delta))
    real = np.asarray(mask) > 0
    sums = {
        "mse": (errors**2).mean(1)[real].sum(),
        "mae": np.abs(errors).mean(1)[real].sum(),
        "loss": losses.mean(1)[real].sum(),
    }
    return {name: (value, real.sum()) for name, value in sums.items()}


def test_loss_and_metrics_literal():
    task = RegressionTask()
    loss = task.loss(OUTPUTS, {"label": LABELS})
    assert loss.shape == () and loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, MSE.mean(), rtol=1e-6)
    metrics = task.metrics(OUTPUTS, {"label": LABELS})
    assert set(metrics) == {"mse", "mae", "loss", "r2"}
    np.testing.assert_allclose(metrics["mse"], (MSE.sum(), 3.0), rtol=1e-6)
    np.testing.assert_allclose(metrics["mae"], (MAE.sum(), 3.0), rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], (MSE.sum(), 3.0), rtol=1e-6)
    for value, normalizer in metrics.values():
        assert value.dtype == normalizer.dtype == jnp.float32
    # Per output: sum(w), sum(y), sum(y^2), sum(e^2); labels [0, 2, 0] and [2, 2, 1].
    statistics, normalizer = metrics["r2"]
    np.testing.assert_allclose(statistics, [[3, 3], [2, 5], [4, 9], [17, 13]], rtol=1e-6)
    assert normalizer == 1.0
    # SST = 4 - 2^2 / 3 = 8/3 and 9 - 5^2 / 3 = 2/3: R^2 = 1 - 17 / (8/3) = -5.375 and
    # 1 - 13 / (2/3) = -18.5, averaged: -11.9375.
    assert task.summarize(jax.device_get(metrics))["r2"] == pytest.approx(-11.9375, rel=1e-6)


def test_huber_literal():
    # delta 1: |e| = 1 -> 0.5; |e| = 2 -> 1.5; |e| = 3 -> 2.5; |e| = 4 -> 3.5; 0 -> 0.
    task = RegressionTask(huber_delta=1.0)
    expected = np.array([(0.5 + 1.5) / 2, 2.5 / 2, 3.5 / 2])
    np.testing.assert_allclose(task.loss(OUTPUTS, {"label": LABELS}), expected.mean(), rtol=1e-6)
    metrics = task.metrics(OUTPUTS, {"label": LABELS})
    np.testing.assert_allclose(metrics["loss"], (expected.sum(), 3.0), rtol=1e-6)
    np.testing.assert_allclose(metrics["mse"], (MSE.sum(), 3.0), rtol=1e-6)  # not Huber


@pytest.mark.parametrize("huber_delta", [None, 0.7])
@pytest.mark.parametrize("example_shape", [(), (3,), (4, 5, 2)])
def test_masked_metrics_equal_a_numpy_reference(huber_delta, example_shape):
    rng = np.random.default_rng(0)
    shape = (6, *example_shape)
    outputs = jnp.asarray(rng.normal(size=shape), jnp.float32)
    labels = jnp.asarray(rng.normal(size=shape), jnp.float32)
    mask = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    batch = {"label": labels, "batch_mask": mask}
    task = RegressionTask(huber_delta=huber_delta)
    loss, metrics = _loss_and_metrics(task, outputs, batch)
    reference = _reference(outputs, labels, mask, huber_delta)
    for name, (value, normalizer) in reference.items():
        np.testing.assert_allclose(metrics[name][0], value, rtol=1e-5)
        assert float(metrics[name][1]) == normalizer == 4
    np.testing.assert_allclose(loss, reference["loss"][0] / 4, rtol=1e-5)
    eager_loss, eager_metrics = task.loss(outputs, batch), task.metrics(outputs, batch)
    np.testing.assert_allclose(eager_loss, loss, rtol=1e-6)
    for name in metrics:
        for eager, jitted in zip(eager_metrics[name], metrics[name]):
            np.testing.assert_allclose(eager, jitted, rtol=1e-6)


def test_padding_may_hold_nan_and_all_padding_gives_zero():
    task = RegressionTask()
    labels = LABELS.at[1].set(jnp.nan)
    batch = {"label": labels, "batch_mask": jnp.array([1.0, 0.0, 1.0])}
    loss, metrics = _loss_and_metrics(task, OUTPUTS, batch)
    np.testing.assert_allclose(loss, (MSE[0] + MSE[2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(metrics["mae"], (MAE[0] + MAE[2], 2.0), rtol=1e-6)
    _, grad = _value_and_grad(task, OUTPUTS, batch)
    assert np.isfinite(grad).all() and (grad[1] == 0).all()
    empty = {"label": LABELS, "batch_mask": jnp.zeros(3)}
    loss, grad = _value_and_grad(task, OUTPUTS, empty)
    assert loss == 0.0 and (grad == 0).all()
    metrics = task.metrics(OUTPUTS, empty)
    for name in ("mse", "mae", "loss"):
        assert metrics[name][0] == 0.0 and metrics[name][1] == 0.0
    np.testing.assert_array_equal(metrics["r2"][0], np.zeros((4, 2)))
    assert np.isnan(task.summarize(jax.device_get({"r2": metrics["r2"]}))["r2"])


def test_gradient_of_mse():
    # d/d outputs of mean_i mean_j (o - y)^2 = 2 (o - y) / (3 * 2).
    _, grad = _value_and_grad(RegressionTask(), OUTPUTS, {"label": LABELS})
    np.testing.assert_allclose(grad, 2 * (OUTPUTS - LABELS) / 6, rtol=1e-6)


@pytest.mark.parametrize(
    "outputs_shape, label_shape, hint",
    [
        ((3, 1), (3,), r" \(the outputs have a trailing axis of 1: give labels `\[n, 1\]`\)"),
        ((3,), (3, 1), ""),
        ((3, 2), (3, 1), ""),
        ((3, 2), (1, 2), ""),
    ],
)
def test_shape_mismatch_raises_instead_of_broadcasting(outputs_shape, label_shape, hint):
    task = RegressionTask()
    batch = {"label": jnp.zeros(label_shape)}
    match = (
        r'`batch\["label"\]` must have the shape of the outputs, '
        + f"{outputs_shape}".replace("(", r"\(").replace(")", r"\)")
        + f": no broadcasting between targets and predictions{hint}. Received: label shape "
        + f"{label_shape}".replace("(", r"\(").replace(")", r"\)")
    )
    for call in (task.loss, task.metrics, jax.jit(task.loss)):
        with pytest.raises(ValueError, match=match):
            call(jnp.zeros(outputs_shape), batch)


def test_bad_labels_and_arguments():
    with pytest.raises(
        ValueError, match=r"must be one array of targets shaped like the outputs, \(3, 2\)\. Received: dict"
    ):
        RegressionTask().loss(OUTPUTS, {"label": {"box": LABELS}})
    with pytest.raises(ValueError, match=r"must hold numeric targets .* Received: dtype bool"):
        RegressionTask().loss(OUTPUTS, {"label": LABELS > 1})
    with pytest.raises(ValueError, match=r'must have a "label" entry, which RegressionTask reads'):
        RegressionTask().metrics(OUTPUTS, {"inputs": OUTPUTS})
    with pytest.raises(ValueError, match=r'`batch\["batch_mask"\]` must have shape \(3,\)'):
        RegressionTask().loss(OUTPUTS, {"label": LABELS, "batch_mask": jnp.ones((3, 2))})
    for delta in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"`huber_delta` must be None .* or a positive finite number"):
            RegressionTask(huber_delta=delta)


def test_integer_targets_are_read_as_floats():
    metrics = RegressionTask().metrics(OUTPUTS, {"label": LABELS.astype(jnp.int32)})
    np.testing.assert_allclose(metrics["mse"], (MSE.sum(), 3.0), rtol=1e-6)


def test_registered_by_name():
    assert "regression" in tasks.list_tasks()
    assert tasks.create_task("regression", huber_delta=2.0) == RegressionTask(huber_delta=2.0)


def test_fit_on_a_linear_problem_from_arrays(getkey):
    """A linear model learns y = x W + b + noise: test mse far below the labels' variance."""
    rng = np.random.default_rng(0)
    weights, bias = rng.normal(size=(8, 2)), np.array([0.5, -1.0])
    inputs = rng.normal(size=(320, 1, 1, 8)).astype(np.float32)
    targets = inputs.reshape(320, 8) @ weights + bias + 0.05 * rng.normal(size=(320, 2))
    targets = targets.astype(np.float32)
    dataset = data.from_arrays(
        (inputs[:256], targets[:256]),
        (inputs[256:], targets[256:]),
        batch_size=32,
        eval_batch_size=24,
        process_index=0,
        process_count=1,
    )
    assert "num_classes" not in dataset.meta_data and dataset.meta_data["label_shape"] == (2,)
    model = nn.FullyConnected(2, (1, 1, 8), hidden_sizes=(), key=getkey())
    task = RegressionTask()
    state, _ = loops.fit(
        model,
        task,
        dataset.train_iter,
        optimizer=optax.adam(0.05),
        num_steps=200,
        key=getkey(),
        log_every=100,
        progress=False,
    )
    results = loops.evaluate(state.model, task, dataset.test_iter)
    variance = float(targets[256:].var(0).mean())
    assert variance > 1.0
    assert results["mse"] < 0.01 * variance, (results, variance)
    assert results["mae"] < 0.2
    # R^2 over the whole test split (padded to whole batches): the noise variance is
    # 0.0025 against a target variance above 1.
    assert results["r2"] > 0.99, results


def _weighted_batch(rng, batch_size=10, example_shape=(3,)):
    outputs = jnp.asarray(rng.normal(size=(batch_size, *example_shape)), jnp.float32)
    labels = jnp.asarray(rng.normal(size=(batch_size, *example_shape)) + 2.0, jnp.float32)
    weights = jnp.asarray(rng.uniform(0.0, 3.0, size=batch_size), jnp.float32)
    mask = jnp.asarray([1.0] * (batch_size - 3) + [0.0] * 3)
    # Padding may hold anything, NaN weights and targets included.
    labels = labels.at[-1].set(jnp.nan)
    weights = weights.at[-2].set(jnp.nan)
    return outputs, {"label": labels, "weight": weights, "batch_mask": mask}


@pytest.mark.parametrize("example_shape", [(), (3,), (2, 2, 2)])
def test_weighted_metrics_match_scikit_learn(example_shape):
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(1)
    outputs, batch = _weighted_batch(rng, example_shape=example_shape)
    task = RegressionTask(weight_key="weight")
    loss, metrics = _loss_and_metrics(task, outputs, batch)
    summary = task.summarize(jax.device_get(metrics))
    real = slice(0, 7)
    y = np.asarray(batch["label"][real]).reshape(7, -1)
    prediction = np.asarray(outputs[real]).reshape(7, -1)
    w = np.asarray(batch["weight"][real])
    assert summary["mse"] == pytest.approx(mean_squared_error(y, prediction, sample_weight=w), rel=1e-5)
    assert summary["mae"] == pytest.approx(mean_absolute_error(y, prediction, sample_weight=w), rel=1e-5)
    assert summary["r2"] == pytest.approx(r2_score(y, prediction, sample_weight=w), rel=1e-5)
    assert summary["loss"] == pytest.approx(summary["mse"], rel=1e-6)
    np.testing.assert_allclose(loss, summary["mse"], rtol=1e-5)
    assert float(metrics["mse"][1]) == pytest.approx(w.sum(), rel=1e-6)
    # Unweighted: scikit-learn's R^2 without weights.
    unweighted = RegressionTask().summarize(
        jax.device_get(_loss_and_metrics(RegressionTask(), outputs, batch)[1])
    )
    assert unweighted["r2"] == pytest.approx(r2_score(y, prediction), rel=1e-5)


def test_r2_is_exact_at_any_batch_split():
    rng = np.random.default_rng(2)
    outputs, batch = _weighted_batch(rng, batch_size=12)
    task = RegressionTask(weight_key="weight")
    whole = jax.device_get(_loss_and_metrics(task, outputs, batch)[1])
    parts = [
        jax.device_get(_loss_and_metrics(task, *jax.tree.map(lambda x: x[s], (outputs, batch)))[1])
        for s in (slice(0, 5), slice(5, 12))
    ]
    summed = jax.device_get(jax.tree.map(jnp.add, *parts))  # as the loops sum them
    for name, value in task.summarize(whole).items():
        assert task.summarize(summed)[name] == pytest.approx(value, rel=1e-5), name
    # A mean of the two batches' R^2 would differ: the target mean is the whole set's.
    per_part = [task.summarize(part)["r2"] for part in parts]
    assert abs(np.mean(per_part) - task.summarize(whole)["r2"]) > 1e-3


def test_r2_of_constant_targets_follows_scikit_learn():
    from sklearn.metrics import r2_score

    labels = jnp.array([[1.0, 3.0], [1.0, 5.0], [1.0, 4.0]])
    for outputs in (labels, labels.at[:, 0].set(1.5)):
        metrics = RegressionTask().metrics(outputs, {"label": labels})
        expected = r2_score(np.asarray(labels), np.asarray(outputs))
        assert RegressionTask().summarize(jax.device_get(metrics))["r2"] == pytest.approx(expected)


def test_weight_checks():
    outputs, batch = _weighted_batch(np.random.default_rng(3))
    task = RegressionTask(weight_key="weight")
    match = r"`batch` must have a 'weight' entry of example weights, .* Received: a batch with keys \['batch_mask', 'label'\]."
    with pytest.raises(ValueError, match=match):
        task.loss(outputs, {"label": batch["label"], "batch_mask": batch["batch_mask"]})
    with pytest.raises(
        ValueError, match=r"`batch\['weight'\]` must have shape \(10,\), .* Received: shape \(10, 1\)."
    ):
        task.loss(outputs, {**batch, "weight": batch["weight"][:, None]})
    negative = {**batch, "weight": batch["weight"].at[2].set(-1.0)}
    match = (
        r"`batch\['weight'\]` must hold finite non-negative weights. Received: 1 value\(s\) outside "
        r"it, from -1 to -1; the counted weights span"
    )
    with pytest.raises(ValueError, match=match):
        task.loss(outputs, negative)
    with pytest.raises(Exception, match=match):
        jax.block_until_ready(_loss_and_metrics(task, outputs, negative))
    with pytest.raises(ValueError, match=r"`weight_key` must be None .* Received: ''."):
        RegressionTask(weight_key="")
