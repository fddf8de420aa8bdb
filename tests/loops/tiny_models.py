"""Tiny classifiers and batches shared by the training-loop tests."""

import equinox as eqx
import jax
import numpy as np
import optax

from scenic_eqx import loops, tasks


class DropoutMLP(eqx.Module):
    """A tiny classifier with dropout, so that the run's randomness matters."""

    hidden: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    head: eqx.nn.Linear

    def __init__(self, *, key, dropout_rate=0.2):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(4, 16, key=k1)
        self.dropout = eqx.nn.Dropout(dropout_rate)
        self.head = eqx.nn.Linear(16, 3, key=k2)

    def __call__(self, x, *, key=None):
        return self.head(self.dropout(jax.nn.relu(self.hidden(x)), key=key))


class BatchNormMLP(eqx.Module):
    """A tiny classifier with BatchNorm over the `"batch"` axis."""

    hidden: eqx.nn.Linear
    norm: eqx.nn.BatchNorm
    head: eqx.nn.Linear

    def __init__(self, *, key):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(4, 16, key=k1)
        self.norm = eqx.nn.BatchNorm(16, axis_name="batch", mode="ema")
        self.head = eqx.nn.Linear(16, 3, key=k2)

    def __call__(self, x, state, *, key=None):
        h, state = self.norm(self.hidden(x), state)
        return self.head(jax.nn.relu(h)), state


def make_batches(num_batches, batch_size=16, seed=0):
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(num_batches):
        x = rng.normal(size=(batch_size, 4)).astype(np.float32)
        label = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
        batches.append({"inputs": x, "label": label, "batch_mask": np.ones(batch_size, np.float32)})
    return batches


def params(state):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(state.model, eqx.is_inexact_array))]


def run(model, num_steps, batches=None, **kwargs):
    """`loops.fit` of `model` on 12 batches of 16 (or `batches`), Adam 1e-2 by default."""
    kwargs.setdefault("optimizer", optax.adam(1e-2))
    return loops.fit(
        model,
        tasks.ClassificationTask(),
        make_batches(12) if batches is None else batches,
        num_steps=num_steps,
        key=jax.random.key(3),
        progress=False,
        **kwargs,
    )
