import json
import os

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
from tiny_models import BatchNormMLP, DropoutMLP, make_batches, params, run

from scenic_eqx import loops, nn, tasks
from scenic_eqx.data import pad_batch


def test_fit_learns_and_logs(tmp_path, getkey):
    state, history = run(
        DropoutMLP(key=getkey()),
        12,
        log_every=4,
        eval_batches=make_batches(2, seed=1),
        eval_every=6,
        workdir=tmp_path,
        schedule=optax.constant_schedule(1e-2),
    )
    assert int(state.step) == 12
    assert [h["step"] for h in history] == [4, 6, 8, 12]
    assert history[-1]["loss"] < history[0]["loss"]
    assert {"accuracy", "loss", "examples_per_sec", "learning_rate", "eval_accuracy"} <= set(history[-1])
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[0] == {"step": 0, "num_params": 4 * 16 + 16 + 16 * 3 + 3}
    assert [r["step"] for r in records[1:]] == [4, 6, 8, 12]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))
    assert loops.Checkpointer(tmp_path / "checkpoints").all_steps() == [12]


def test_eval_metrics_do_not_depend_on_batch_size(getkey):
    model = DropoutMLP(key=getkey())
    examples = make_batches(1, batch_size=45, seed=2)[0]

    def batches(size):
        for start in range(0, 45, size):
            chunk = {k: v[start : start + size] for k, v in examples.items()}
            yield pad_batch(chunk, size)

    task = tasks.ClassificationTask()
    small = loops.evaluate(model, task, lambda: batches(7))  # padded 7 -> 8 over 8 devices too
    whole = loops.evaluate(model, task, list(batches(45)))
    single = loops.evaluate(model, task, batches(360), mesh=loops.data_mesh(jax.devices()[:1]))
    assert small["accuracy"] == whole["accuracy"] == single["accuracy"]
    assert small["accuracy"] * 45 == pytest.approx(round(small["accuracy"] * 45))
    np.testing.assert_allclose(small["loss"], whole["loss"], rtol=1e-6)
    np.testing.assert_allclose(single["loss"], whole["loss"], rtol=1e-6)


@pytest.mark.parametrize("model_cls", [DropoutMLP, BatchNormMLP])
def test_eight_devices_match_one(model_cls):
    assert jax.device_count() == 8
    model = model_cls(key=jax.random.key(0))
    # Dropout keys are drawn per example from one step key, so the sharding is invisible;
    # plain SGD, since Adam turns rounding noise in near-zero gradients into full steps.
    sgd = optax.sgd(0.1)
    state8, hist8 = run(model, 6, log_every=3, optimizer=sgd)
    state1, hist1 = run(model, 6, log_every=3, optimizer=sgd, mesh=loops.data_mesh(jax.devices()[:1]))
    for a, b in zip(params(state8), params(state1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hist8[-1]["loss"], hist1[-1]["loss"], rtol=1e-5)
    if model_cls is BatchNormMLP:
        stats = lambda s: [np.asarray(x) for x in jax.tree.leaves(s.model_state)]
        for a, b in zip(stats(state8), stats(state1)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class StopAt:
    def __init__(self, step):
        self.step = step

    def __call__(self, step, record, state):
        if step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("model_cls", [DropoutMLP, BatchNormMLP])
def test_resumed_run_matches_uninterrupted_run(tmp_path, model_cls):
    model = model_cls(key=jax.random.key(0))
    uninterrupted, full_history = run(model, 10, log_every=1)
    with pytest.raises(KeyboardInterrupt):
        run(model, 10, log_every=1, workdir=tmp_path, checkpoint_every=3, callbacks=[StopAt(7)])
    assert loops.Checkpointer(tmp_path / "checkpoints").latest_step() == 6
    resumed, history = run(model, 10, log_every=1, workdir=tmp_path, checkpoint_every=3)
    assert int(resumed.step) == 10
    assert [h["step"] for h in history] == [7, 8, 9, 10]
    for a, b in zip(params(resumed), params(uninterrupted)):
        np.testing.assert_array_equal(a, b)  # bitwise
    for a, b in zip(jax.tree.leaves(resumed.opt_state), jax.tree.leaves(uninterrupted.opt_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [h["loss"] for h in history] == [h["loss"] for h in full_history[6:]]


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(tmp_path, getkey):
    batches = make_batches(12)
    batches[6]["inputs"][0, 0] = np.nan  # the 7th step sees a NaN
    with pytest.raises(FloatingPointError, match="not finite at step 7"):
        loops.fit(
            DropoutMLP(key=getkey()),
            tasks.ClassificationTask(),
            batches,
            optimizer=optax.adam(1e-2),
            num_steps=12,
            key=getkey(),
            log_every=100,
            checkpoint_every=3,
            workdir=tmp_path,
            progress=False,
        )
    checkpointer = loops.Checkpointer(tmp_path / "checkpoints")
    assert checkpointer.all_steps() == [3, 6]
    like = loops.init_train_state(DropoutMLP(key=getkey()), optax.adam(1e-2), key=getkey())
    restored = checkpointer.restore(train_state=like)["train_state"]
    assert int(restored.step) == 6
    assert all(np.isfinite(p).all() for p in params(restored))


def test_fit_trains_a_registry_model_on_eight_devices(getkey):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(16, 8, 8, 1)).astype(np.float32)
    labels = (images[:, :4].mean((1, 2, 3)) > images[:, 4:].mean((1, 2, 3))).astype(np.int32)
    batch = {"inputs": images, "label": labels, "batch_mask": np.ones(16, np.float32)}
    model = nn.create("simple_cnn", num_classes=2, in_channels=1, num_filters=(8,), key=getkey())
    state, history = loops.fit(
        model,
        tasks.ClassificationTask(),
        [batch] * 30,
        optimizer=optax.adam(3e-2),
        num_steps=30,
        key=getkey(),
        log_every=10,
        progress=False,
    )
    assert history[-1]["loss"] < history[0]["loss"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_steps": 0}, r"`num_steps` must be a positive integer. Received: 0"),
        ({"num_steps": 2, "log_every": -1}, r"`log_every` must be a positive integer. Received: -1"),
        (
            {"num_steps": 2, "eval_every": 1},
            r"`eval_every` \(=1\) needs `eval_batches`. Received: eval_batches=None",
        ),
        (
            {"num_steps": 2, "checkpoint_every": 1},
            r"`checkpoint_every` \(=1\) needs a `workdir`. Received: workdir=None",
        ),
        (
            {"num_steps": 4, "steps_per_dispatch": 3, "log_every": 4},
            r"`log_every` must be a multiple of `steps_per_dispatch` \(=3\).*Received: log_every=4",
        ),
        (
            {"num_steps": 2, "precision": "fp16"},
            r"`precision` must be one of 'float32', 'bfloat16'.*Received: 'fp16'",
        ),
        (
            {"num_steps": 2, "accumulate_steps": 0},
            r"`accumulate_steps` must be a positive integer. Received: 0",
        ),
        (
            {"num_steps": 2, "accumulate_steps": 3},
            r"`accumulate_steps` \(=3\) must divide the batch size. Received: a batch of 16",
        ),
        ({"num_steps": 2, "ema_decay": 1.0}, r"`ema_decay` must be a number in \[0, 1\). Received: 1.0"),
        ({"num_steps": 20}, r"`train_batches` ran out at step 13 of 20"),
    ],
)
def test_fit_argument_errors(kwargs, match, getkey):
    with pytest.raises(ValueError, match=match):
        run(DropoutMLP(key=getkey()), **kwargs)


def test_batch_not_divisible_by_devices_is_an_error(getkey):
    batches = make_batches(2, batch_size=12)
    with pytest.raises(
        ValueError, match=r"per-host batch size must be divisible .* \(=8\). Received: a batch of 12"
    ):
        loops.fit(
            DropoutMLP(key=getkey()),
            tasks.ClassificationTask(),
            batches,
            optimizer=optax.sgd(0.1),
            num_steps=2,
            key=getkey(),
            progress=False,
        )


def test_evaluate_of_nothing_is_an_error(getkey):
    with pytest.raises(
        ValueError, match="must yield at least one batch to evaluate. Received: an empty iterable"
    ):
        loops.evaluate(DropoutMLP(key=getkey()), tasks.ClassificationTask(), [])


def test_batchnorm_initial_statistics_are_not_parameters():
    model = BatchNormMLP(key=jax.random.key(0))
    is_index = lambda x: isinstance(x, eqx.nn.StateIndex)

    def init(m):
        indices = [x for x in jax.tree.leaves(m, is_leaf=is_index) if is_index(x)]
        return [np.asarray(x) for index in indices for x in jax.tree.leaves(index.init)]

    state, _ = run(model, 3, optimizer=optax.adamw(1e-2, weight_decay=0.5))
    assert init(model)
    for before, after in zip(init(model), init(state.model)):
        np.testing.assert_array_equal(before, after)  # no gradient step, no weight decay
    trainable = loops.partition_trainable(model)[0]
    assert len(jax.tree.leaves(trainable)) == 4 + 2  # two Linear layers, BatchNorm weight and bias
