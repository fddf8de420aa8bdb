"""Divergence: training stops at the first step whose loss or gradient is not finite.

Each step marks, on the device, whether its loss and the parameters it produced are
finite (a NaN or Inf gradient reaches the parameters through any optax update, while
an optimizer that skips such updates on purpose, like `optax.apply_if_finite`, leaves
them finite). The host reads the mark at the periodic actions, so it costs no extra
synchronisation; no checkpoint is written after a bad step.

With `debug_nans=True`, `fit` also checks after every dispatch, keeping a copy of the
state from before it; at the first bad step it replays that step with a probe optimizer
whose update is NaN exactly where the gradient is not finite, to name the first such
parameter. That costs a copy of the state and a wait per dispatch: a debugging aid.
"""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Bool, PyTree

from ._fine_tuning import parameter_path
from ._sharding import shard_batch
from ._train_state import TrainState, partition_trainable


def all_finite(tree: PyTree) -> Bool[Array, ""]:
    """Whether every inexact array of `tree` holds only finite values."""
    leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves])) if leaves else jnp.array(True)


def nonfinite_message(step: int, detail: str = "") -> str:
    """The `FloatingPointError` message for a first non-finite step."""
    hint = detail or " Pass `debug_nans=True` to name the first parameter whose gradient is not finite."
    return (
        f"The training loss or a gradient is not finite at step {step}: training stopped; "
        f"the last good checkpoint (if any) is kept.{hint}"
    )


def _probe_optimizer() -> optax.GradientTransformation:
    """Updates that are 0 where the gradient is finite and NaN where it is not."""

    def update(grads, state, params=None):
        mark = lambda g: jnp.where(jnp.isfinite(g), jnp.zeros_like(g), jnp.full_like(g, jnp.nan))  # noqa: E731
        return jax.tree.map(mark, grads), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def first_nonfinite_gradient(
    make_step: Callable[[optax.GradientTransformation], Callable],
    state: TrainState,
    batch: PyTree,
    mesh: Mesh,
) -> tuple[bool, str | None]:
    """Replays one step on `state`: whether its loss is finite, and the path of the first
    parameter (in tree order) whose gradient is not finite, or `None`.

    Arguments:
        make_step: `optimizer -> train_step`, building the run's step around `optimizer`.
        state: the state before the step.
        batch: the step's batch, split over `mesh`.
        mesh: the device mesh.
    """
    probe = _probe_optimizer()
    probe_step = make_step(probe)
    params, static = partition_trainable(state.model)
    paths = [parameter_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    probe_state = TrainState(state.model, state.model_state, probe.init(params), state.step, state.key)

    @eqx.filter_jit
    def run(probe_state, batch):
        new_state, loss, _ = probe_step(probe_state, batch)
        marks = [jnp.isfinite(x).all() for x in jax.tree.leaves(partition_trainable(new_state.model)[0])]
        replicated = NamedSharding(mesh, PartitionSpec())
        return jax.lax.with_sharding_constraint((jnp.isfinite(loss), jnp.stack(marks)), replicated)

    loss_finite, finite = jax.device_get(run(probe_state, batch))
    bad = [path for path, ok in zip(paths, finite) if not ok]
    return bool(loss_finite), (bad[0] if bad else None)


class NanDebugger:
    """`debug_nans`: checks every dispatch and names the first non-finite gradient.

    Arguments:
        make_step: `optimizer -> train_step`, the run's step around any optimizer.
        optimizer: the run's optimizer.
        mesh: the device mesh.
    """

    def __init__(self, make_step: Callable, optimizer: optax.GradientTransformation, mesh: Mesh):
        self._make_step = make_step
        self._train_step = eqx.filter_jit(make_step(optimizer))
        self._mesh = mesh

    def run(self, step_fn, batches: PyTree, count: int, host_batches: Sequence[PyTree], last: int) -> float:
        """Runs a dispatch of `count` steps ending at `last` on `step_fn` (a
        `FlatTrainStep`) and returns what it returns (its compile seconds); raises
        `FloatingPointError` naming the parameter if one of the steps was not finite.

        Arguments:
            step_fn: the compiled step.
            batches: the dispatch's batches, as `step_fn` takes them.
            count: the number of steps.
            host_batches: the same batches, one per step, as this host read them.
            last: the dispatch's last step.
        """
        before = step_fn.state_copy()  # the step donates the state: keep a copy
        compile_seconds = step_fn(batches, count)
        bad = int(step_fn.sums["first_nonfinite_step"])
        if bad < 0:
            return compile_seconds
        state, first = before, last - count + 1
        for batch in host_batches[: bad - first]:  # the good steps before it, again
            state, _, _ = self._train_step(state, shard_batch(batch, self._mesh))
        batch = shard_batch(host_batches[bad - first], self._mesh)
        loss_finite, path = first_nonfinite_gradient(self._make_step, state, batch, self._mesh)
        if path is None:
            detail = " Its gradient is finite: the optimizer's update is not."
        else:
            detail = f" The first parameter whose gradient is not finite: `{path}`."
        detail = (" Its loss is finite." if loss_finite else " Its loss is not finite.") + detail
        raise FloatingPointError(nonfinite_message(bad, detail))
