"""Gradient accumulation: k micro-batches, one update, the same as one k-times batch."""

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
from tiny_models import BatchNormMLP, DropoutMLP, make_batches, params, run

from scenic_eqx import loops
from scenic_eqx.loops._accumulate import split_batch


@pytest.mark.parametrize("num_devices", [1, 2, 4])
def test_four_micro_batches_equal_one_four_times_batch(num_devices):
    model = DropoutMLP(key=jax.random.key(0), dropout_rate=0.0)
    mesh = loops.data_mesh(jax.devices()[:num_devices])
    batches = make_batches(4, batch_size=32)
    batches[1]["batch_mask"][:5] = 0.0  # padding rows count nowhere, in either run
    common = dict(batches=batches, optimizer=optax.sgd(0.5), mesh=mesh, log_every=2)
    whole, whole_history = run(model, 4, **common)
    accumulated, history = run(model, 4, accumulate_steps=4, **common)
    for a, b in zip(params(accumulated), params(whole)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for record, reference in zip(history, whole_history):
        assert record["accuracy"] == reference["accuracy"]  # metric sums are exact
        np.testing.assert_allclose(record["loss"], reference["loss"], rtol=1e-6)


def test_split_batch_interleaves_examples_and_rejects_indivisible_batches():
    batch = {"inputs": np.arange(12).reshape(6, 2), "batch_mask": np.ones(6)}
    micro = split_batch(batch, 3)
    np.testing.assert_array_equal(micro["inputs"][:, :, 0], [[0, 6], [2, 8], [4, 10]])
    with pytest.raises(
        ValueError, match=r"`accumulate_steps` \(=4\) must divide the batch size. Received: a batch of 6"
    ):
        split_batch(batch, 4)


def test_batchnorm_runs_each_micro_batch_in_turn():
    """BatchNorm normalises with each micro-batch's statistics and updates its running
    averages once per micro-batch, as if the micro-batches were steps of their own."""
    model = BatchNormMLP(key=jax.random.key(0))
    batch = make_batches(1, batch_size=16)[0]
    state, _ = run(model, 1, batches=[batch], accumulate_steps=2, optimizer=optax.sgd(0.0))
    initial = expected = eqx.nn.State(model)
    micro_batches = split_batch(batch, 2)
    for j in range(2):
        _, expected = loops.apply_model(model, expected, micro_batches["inputs"][j], key=None)
    one_pass = loops.apply_model(model, initial, batch["inputs"], key=None)[1]
    for a, b, c in zip(*map(jax.tree.leaves, (state.model_state, expected, one_pass))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
        if a.dtype == np.float32:  # (not the "first time" flag)
            assert not np.allclose(np.asarray(a), np.asarray(c))  # not the whole batch's statistics
