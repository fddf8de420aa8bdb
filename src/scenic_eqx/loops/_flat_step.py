"""The jitted training step with low host overhead, and its on-device metric sums.

Following Equinox's low-overhead pattern, the `TrainState` is partitioned and flattened
once; every call passes flat lists of arrays (flattened by JAX's C++ fast path) to a
`jax.jit`-compiled step that donates them. Metric sums stay on the device between log
points, so the host never waits for the device inside a log window.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

from ._sharding import batch_sharding
from ._train_state import TrainState


def _add_step(sums: PyTree, state: TrainState, loss, metrics) -> PyTree:
    """Adds one step's metrics to `sums`; remembers the first step whose loss was not finite."""
    bad = (sums["first_nonfinite_step"] < 0) & ~jnp.isfinite(loss)
    return {
        "metrics": jax.tree.map(jnp.add, sums["metrics"], metrics),
        "first_nonfinite_step": jnp.where(bad, state.step + 1, sums["first_nonfinite_step"]),
    }


def zero_sums(train_step: Callable, state: TrainState, batch: PyTree) -> PyTree:
    """Empty metric sums with the structure `train_step` returns."""
    _, _, metrics = eqx.filter_eval_shape(train_step, state, batch)
    return {
        "metrics": jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metrics),
        "first_nonfinite_step": jnp.array(-1, jnp.int32),
    }


class FlatTrainStep:
    """Runs `train_step` on flat, donated state leaves and accumulates metric sums.

    Arguments:
        train_step: `(state, batch) -> (state, loss, metrics)`, from `make_train_step`.
        state: the initial `TrainState`, already placed on `mesh`.
        batches passed to a call: `host_batch(batch, mesh)` (numpy in one process).
        sums: initial metric sums (`zero_sums`, or restored from a checkpoint).
        mesh: the device mesh; state and sums are replicated on it.
    """

    def __init__(self, train_step: Callable, state: TrainState, sums: PyTree, mesh: Mesh):
        arrays, self._static = eqx.partition(state, eqx.is_array)
        self._leaves, self._treedef = jax.tree.flatten(arrays)
        self._sums, self._sums_def = jax.tree.flatten(sums)
        replicated = NamedSharding(mesh, PartitionSpec())

        def flat_step(leaves, sums, batch):
            state = eqx.combine(jax.tree.unflatten(self._treedef, leaves), self._static)
            new_state, loss, metrics = train_step(state, batch)
            new_sums = _add_step(jax.tree.unflatten(self._sums_def, sums), state, loss, metrics)
            return jax.tree.leaves(eqx.filter(new_state, eqx.is_array)), jax.tree.leaves(new_sums)

        def reset(sums):
            sums = jax.tree.unflatten(self._sums_def, sums)
            sums["metrics"] = jax.tree.map(jnp.zeros_like, sums["metrics"])
            return jax.tree.leaves(sums)

        sums_shardings = [replicated] * len(self._sums)
        leaf_shardings = [x.sharding for x in self._leaves]
        self._step = jax.jit(
            flat_step,
            donate_argnums=(0, 1),
            in_shardings=(leaf_shardings, sums_shardings, batch_sharding(mesh)),
            out_shardings=(leaf_shardings, sums_shardings),
        )
        self._reset = jax.jit(reset, donate_argnums=0, out_shardings=sums_shardings)

    def __call__(self, batch: PyTree) -> None:
        self._leaves, self._sums = self._step(self._leaves, self._sums, batch)

    @property
    def state(self) -> TrainState:
        return eqx.combine(jax.tree.unflatten(self._treedef, self._leaves), self._static)

    @property
    def sums(self) -> PyTree:
        return jax.tree.unflatten(self._sums_def, self._sums)

    def reset_metrics(self) -> None:
        """Zeroes the metric sums (the non-finite-loss marker is kept)."""
        self._sums = self._reset(self._sums)
