"""Checkpoints of a training run with orbax: save every few steps, keep the last few."""

import os

import equinox as eqx
import jax
from jaxtyping import PyTree


def _is_typed_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _raw_leaves(tree: PyTree) -> list[jax.Array]:
    """The arrays of `tree`, typed PRNG keys as their raw key data."""
    leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_array))
    return [jax.random.key_data(x) if _is_typed_key(x) else x for x in leaves]


def _fill(like: PyTree, raw: list[jax.Array]) -> PyTree:
    """`like` with its arrays replaced by `raw` (undoing `_raw_leaves`)."""
    arrays, static = eqx.partition(like, eqx.is_array)
    leaves, treedef = jax.tree.flatten(arrays)
    if len(leaves) != len(raw):
        raise ValueError(
            f"The checkpoint holds {len(raw)} arrays but the pytree to restore has {len(leaves)}."
        )
    filled = [
        jax.random.wrap_key_data(r, impl=jax.random.key_impl(x)) if _is_typed_key(x) else r
        for r, x in zip(raw, leaves)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, filled), static)


class Checkpointer:
    """Saves and restores named pytrees of arrays under `directory`, by step number.

    A checkpoint holds the arrays of each named pytree, not its structure: `restore`
    takes pytrees of the same structure (freshly initialised ones) and fills in their
    arrays, with their shardings. Typed PRNG keys are stored as their raw key data.
    `fit` saves `train_state` (a `TrainState`) and `metric_sums`.

    Arguments:
        directory: where the step folders go; created if missing.
        max_to_keep: how many of the latest checkpoints to keep.
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3):
        if max_to_keep < 1:
            raise ValueError(f"`max_to_keep` (={max_to_keep}) must be at least 1.")
        import orbax.checkpoint as ocp  # ~0.5 s to import: only when checkpointing

        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or `None` if there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the kept checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, **items: PyTree) -> None:
        """Starts writing the arrays of each named pytree as checkpoint `step` (asynchronously)."""
        import orbax.checkpoint as ocp

        args = {name: ocp.args.StandardSave(_raw_leaves(tree)) for name, tree in items.items()}
        self._manager.save(step, args=ocp.args.Composite(**args))

    def restore(self, step: int | None = None, **likes: PyTree) -> dict[str, PyTree]:
        """The named pytrees of checkpoint `step` (default: the latest), each shaped like its `like`.

        Any subset of the saved names may be restored.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError("There is no checkpoint to restore.")
        import orbax.checkpoint as ocp

        abstract = {
            name: ocp.args.StandardRestore(
                [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding) for x in _raw_leaves(like)]
            )
            for name, like in likes.items()
        }
        restored = self._manager.restore(step, args=ocp.args.Composite(**abstract))
        return {name: _fill(like, restored[name]) for name, like in likes.items()}

    def wait_until_finished(self) -> None:
        """Blocks until every started save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
