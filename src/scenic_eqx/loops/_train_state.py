"""`TrainState`: everything a training run carries from one step to the next."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Int, PRNGKeyArray, PyTree


class TrainState(eqx.Module):
    """The model, its state, the optimizer state, the step and the run's base key.

    Fields:
        model: the `eqx.Module` being trained.
        model_state: its `eqx.nn.State` (BatchNorm statistics), or `None`.
        opt_state: the optax state of the model's inexact arrays.
        step: number of optimizer steps taken, a scalar int32 array.
        key: the run's base PRNG key; step `i` uses `jax.random.fold_in(key, i)`, so a
            resumed run draws the same randomness as an uninterrupted one.
    """

    model: eqx.Module
    model_state: eqx.nn.State | None
    opt_state: PyTree
    step: Int[Array, ""]
    key: PRNGKeyArray


def _is_state_index(x) -> bool:
    return isinstance(x, eqx.nn.StateIndex)


def _is_trainable(x) -> bool:
    if isinstance(x, jax.ShapeDtypeStruct):
        return jnp.issubdtype(x.dtype, jnp.inexact)
    return eqx.is_inexact_array(x)


def partition_trainable(model: eqx.Module) -> tuple[PyTree, PyTree]:
    """`(params, rest)`: the inexact arrays that training updates, and everything else.

    The initial values held by `eqx.nn.StateIndex`es (BatchNorm statistics) are arrays
    too, but they live in the model state, not among the parameters: they get no gradient,
    no optimizer state and no weight decay. Works on models of `jax.ShapeDtypeStruct`s
    (from `eqx.filter_eval_shape`) too.
    """
    return eqx.partition(model, _is_trainable, is_leaf=_is_state_index)


def has_state(model: eqx.Module) -> bool:
    """Whether `model` holds `eqx.nn.StateIndex`es (e.g. BatchNorm statistics)."""
    return any(_is_state_index(x) for x in jax.tree.leaves(model, is_leaf=_is_state_index))


def init_train_state(
    model: eqx.Module,
    optimizer: optax.GradientTransformation,
    *,
    key: PRNGKeyArray,
    model_state: eqx.nn.State | None = None,
) -> TrainState:
    """Step 0 of a run.

    Arguments:
        model: the model to train.
        optimizer: an optax transformation; its state covers the inexact arrays only.
        key: the run's base PRNG key.
        model_state: the model's `eqx.nn.State`; when `None` and the model has state
            (BatchNorm), it is built from the model's initial values.

    Returns:
        A `TrainState` at step 0.
    """
    if model_state is None and has_state(model):
        model_state = eqx.nn.State(model)
    opt_state = optimizer.init(partition_trainable(model)[0])
    return TrainState(model, model_state, opt_state, jnp.zeros((), jnp.int32), key)
