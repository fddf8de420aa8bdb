"""The compiled training step with low host overhead, and its on-device metric sums.

Following Equinox's low-overhead pattern, the `TrainState` is partitioned and flattened
once; every call passes flat lists of arrays (flattened by JAX's C++ fast path) to a
`jax.jit`-compiled step that donates them. Metric sums stay on the device between
log points, so the host never waits for the device inside a log window. One call may
run several steps (`lax.scan` over stacked batches): one dispatch, one host round trip.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

from ._compile_timer import compile_timer
from ._divergence import all_finite
from ._train_state import TrainState, partition_trainable


def _add_step(sums: PyTree, state: TrainState, new_state: TrainState, loss, metrics) -> PyTree:
    """Adds one step's metrics to `sums`; remembers the first step whose loss, or the
    parameters it produced (so its gradient), were not finite."""
    finite = jnp.isfinite(loss) & all_finite(partition_trainable(new_state.model)[0])
    bad = (sums["first_nonfinite_step"] < 0) & ~finite
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
        state: the initial `TrainState`, already placed on `mesh` (replicated or
            sharded: the step keeps each array's sharding).
        sums: initial metric sums (`zero_sums`, or restored from a checkpoint),
            replicated on `mesh`.
        mesh: the device mesh; batches are split over its `"data"` axis.

    A call `step(batches, num_steps)` runs `num_steps` steps: with 1, `batches` is one
    batch (`host_batch(batch, mesh)`); with more, every array carries a leading
    `num_steps` axis of stacked batches. Each distinct `num_steps` is compiled at its first
    call; `compile_seconds[num_steps]` records how long that took.
    """

    def __init__(self, train_step: Callable, state: TrainState, sums: PyTree, mesh: Mesh):
        arrays, self._static = eqx.partition(state, eqx.is_array)
        self._leaves, self._treedef = jax.tree.flatten(arrays)
        self._sums, self._sums_def = jax.tree.flatten(sums)
        self._train_step = train_step
        self._mesh = mesh
        self._steps: dict[int, Callable] = {}
        self.compile_seconds: dict[int, float] = {}
        replicated = NamedSharding(mesh, PartitionSpec())
        self._sums_shardings = [replicated] * len(self._sums)
        self._leaf_shardings = [x.sharding for x in self._leaves]

        def reset(sums):
            sums = jax.tree.unflatten(self._sums_def, sums)
            sums["metrics"] = jax.tree.map(jnp.zeros_like, sums["metrics"])
            return jax.tree.leaves(sums)

        self._reset = jax.jit(reset, donate_argnums=0, out_shardings=self._sums_shardings)

    def _one_step(self, leaves, sums, batch):
        state = eqx.combine(jax.tree.unflatten(self._treedef, leaves), self._static)
        new_state, loss, metrics = self._train_step(state, batch)
        new_sums = _add_step(jax.tree.unflatten(self._sums_def, sums), state, new_state, loss, metrics)
        return jax.tree.leaves(eqx.filter(new_state, eqx.is_array)), jax.tree.leaves(new_sums)

    def _jitted(self, num_steps: int):
        if num_steps == 1:
            run, spec = self._one_step, PartitionSpec("data")
        else:

            def run(leaves, sums, batches):
                def body(carry, batch):
                    return self._one_step(*carry, batch), None

                return jax.lax.scan(body, (leaves, sums), batches)[0]

            spec = PartitionSpec(None, "data")
        return jax.jit(
            run,
            donate_argnums=(0, 1),
            in_shardings=(self._leaf_shardings, self._sums_shardings, NamedSharding(self._mesh, spec)),
            out_shardings=(self._leaf_shardings, self._sums_shardings),
        )

    def is_compiled(self, num_steps: int) -> bool:
        return num_steps in self.compile_seconds

    def __call__(self, batches: PyTree, num_steps: int = 1) -> float:
        """Runs `num_steps` steps; returns the seconds spent compiling them (0 after
        the first call with this `num_steps`).

        The first call compiles while it runs (timed from JAX's compile events): a
        separate ahead-of-time compilation would trace and lower the step twice.
        """
        step = self._steps.get(num_steps)
        if step is not None:
            self._leaves, self._sums = step(self._leaves, self._sums, batches)
            return 0.0
        step = self._steps[num_steps] = self._jitted(num_steps)
        with compile_timer() as timer:
            self._leaves, self._sums = step(self._leaves, self._sums, batches)
        self.compile_seconds[num_steps] = timer.seconds
        return timer.seconds

    @property
    def state(self) -> TrainState:
        return eqx.combine(jax.tree.unflatten(self._treedef, self._leaves), self._static)

    def state_copy(self) -> TrainState:
        """A copy of the current state that the next step's donation leaves intact."""
        leaves = [jnp.copy(x) for x in self._leaves]
        return eqx.combine(jax.tree.unflatten(self._treedef, leaves), self._static)

    @property
    def sums(self) -> PyTree:
        return jax.tree.unflatten(self._sums_def, self._sums)

    def reset_metrics(self) -> None:
        """Zeroes the metric sums (the non-finite-loss marker is kept)."""
        self._sums = self._reset(self._sums)
