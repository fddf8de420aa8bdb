"""Putting arrays onto shardings: `place` (host values), `create_sharded` (built there)
and `init_placed_train_state` (a whole `TrainState`, as `fit` does).

All work with one process or several `jax.distributed` processes, and take the
shardings of `parameter_shardings`, `opt_state_shardings` or `train_state_shardings`.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import numpy as np
import optax
from jax.sharding import Mesh, Sharding as JaxSharding
from jaxtyping import PyTree

from ._partitioning import (
    FSDP_MIN_SIZE,
    ShardingChoice,
    is_array_like,
    parameter_shardings,
    train_state_shardings,
)
from ._train_state import TrainState, has_state, init_train_state, partition_trainable

Sharding = ShardingChoice
"""A `sharding` argument: `"replicated"`, `"fsdp"`, `"megatron"` or a sequence of rules."""


def _put(x, sharding: JaxSharding) -> jax.Array:
    """A new global array holding the host value `x` (the same on every host) on `sharding`."""
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _put(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    # Each shard gets a fresh host copy of its slice: on CPU, JAX may adopt a host buffer
    # without copying it (measured: small arrays), and `np.asarray` of a jax array is a
    # view of its buffer, so plain slices could leave the result in the caller's memory.
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: np.array(host[index]))


def place(tree: PyTree, shardings: PyTree | JaxSharding) -> PyTree:
    """Puts the arrays of `tree` onto `shardings`, in one process or several.

    Every host passes the same values (host arrays, or jax arrays it can read); each
    device gets its slice from the host through `jax.make_array_from_callback` (for a
    model too big for one device, build it sharded with `create_sharded` instead). The results never
    alias the caller's buffers, so a trainer may donate them. Typed PRNG keys keep their
    type. Non-array leaves pass through.

    Arguments:
        tree: a pytree (or `eqx.Module`) of arrays and other leaves.
        shardings: one `Sharding` for every array, or a pytree shaped like
            `eqx.filter(tree, is_array)` (from `parameter_shardings`,
            `opt_state_shardings` or `train_state_shardings`).

    Returns:
        `tree` with its arrays placed.
    """
    arrays, static = eqx.partition(tree, eqx.is_array)
    leaves, treedef = jax.tree.flatten(arrays)
    if isinstance(shardings, JaxSharding):
        targets = [shardings] * len(leaves)
    else:
        try:
            targets = treedef.flatten_up_to(shardings)
        except (ValueError, TypeError) as e:
            raise ValueError(
                "`shardings` must be a Sharding or a pytree shaped like the arrays of "
                f"`tree` (eqx.filter(tree, eqx.is_array)); they differ: {e}"
            ) from None
    placed = []
    for x, target in zip(leaves, targets):
        if not isinstance(target, JaxSharding):
            raise ValueError(
                f"`shardings` must hold a Sharding for every array of `tree`. Received: "
                f"{target!r} for an array of shape {tuple(x.shape)}."
            )
        placed.append(_put(x, target))
    return eqx.combine(jax.tree.unflatten(treedef, placed), static)


def _is_sharding_tree(sharding) -> bool:
    if isinstance(sharding, (str, JaxSharding)):
        return isinstance(sharding, JaxSharding)
    leaves = jax.tree.leaves(sharding, is_leaf=lambda x: isinstance(x, JaxSharding))
    return bool(leaves) and all(isinstance(x, JaxSharding) for x in leaves)


def create_sharded(
    fn: Callable[..., PyTree],
    *args,
    mesh: Mesh,
    sharding: ShardingChoice | PyTree,
    fsdp_min_size: int = FSDP_MIN_SIZE,
    **kwargs,
) -> PyTree:
    """`fn(*args, **kwargs)` computed under `jax.jit` straight into its shardings.

    The output's shapes come from `eqx.filter_eval_shape`; its arrays are created on
    their devices, each device computing only its shards, so a model too big for one
    device is never whole on one. Non-array parts of the output (static fields) are
    recombined with `eqx.combine`.

    Arguments:
        fn: e.g. `lambda key: nn.ViT(..., key=key)`, or `optimizer.init`.
        *args, **kwargs: passed to `fn`; arrays among them are traced.
        mesh: the device mesh.
        sharding: rules for the output's paths, as in `parameter_shardings`; or a pytree
            of shardings shaped like the output's arrays (e.g. from
            `opt_state_shardings` of `jax.eval_shape(optimizer.init, params)`).
        fsdp_min_size: as in `parameter_shardings`.

    Returns:
        The output of `fn`, its arrays sharded.
    """
    shapes = eqx.filter_eval_shape(fn, *args, **kwargs)
    if _is_sharding_tree(sharding):
        shardings = sharding
    else:
        shardings, _ = parameter_shardings(shapes, mesh, sharding, fsdp_min_size=fsdp_min_size)
    dynamic, static = eqx.partition((args, kwargs), eqx.is_array)

    def make(dynamic):
        args, kwargs = eqx.combine(dynamic, static)
        return eqx.filter(fn(*args, **kwargs), eqx.is_array)

    arrays = jax.jit(make, out_shardings=shardings)(dynamic)
    return eqx.combine(arrays, eqx.filter(shapes, is_array_like, inverse=True))


def init_placed_train_state(
    model: eqx.Module,
    optimizer: optax.GradientTransformation,
    *,
    key,
    mesh: Mesh,
    sharding: Sharding,
    model_state: eqx.nn.State | None = None,
    fsdp_min_size: int = FSDP_MIN_SIZE,
) -> tuple[TrainState, dict[str, tuple[int, ...]]]:
    """`init_train_state`, laid out on `mesh` by `train_state_shardings`.

    The model's arrays are placed (never aliasing the caller's buffers: the trainer
    donates them); the optimizer state is created by a jitted `optimizer.init` directly
    in its shardings, so it is never whole on one device. A model built with
    `create_sharded` is never whole on one device either.

    Arguments:
        model, optimizer, key, model_state: as in `init_train_state`.
        mesh, sharding, fsdp_min_size: as in `parameter_shardings`.

    Returns:
        `(state, replicated)`: the placed state at step 0, and the paths (with shapes)
        of the parameters an `"fsdp"` rule left replicated.
    """
    abstract = eqx.filter_eval_shape(init_train_state, model, optimizer, key=key, model_state=model_state)
    shardings, replicated = train_state_shardings(
        abstract, optimizer, mesh, sharding, fsdp_min_size=fsdp_min_size
    )
    if model_state is None and has_state(model):
        model_state = eqx.nn.State(model)
    model, model_state, key, step = place(
        (model, model_state, key, np.zeros((), np.int32)),
        (shardings.model, shardings.model_state, shardings.key, shardings.step),
    )
    params = partition_trainable(model)[0]
    opt_state = jax.jit(optimizer.init, out_shardings=shardings.opt_state)(params)
    return TrainState(model, model_state, opt_state, step, key), replicated
