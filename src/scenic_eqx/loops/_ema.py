"""An exponential moving average of the parameters, kept in the optimizer state."""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import PyTree

from ._train_state import TrainState, partition_trainable


class ParamsEmaState(NamedTuple):
    """The moving average, shaped like the parameters, in float32."""

    ema: PyTree


def params_ema(decay: float) -> optax.GradientTransformation:
    """Tracks `ema = decay * ema + (1 - decay) * new_params` after every update.

    Chained after an optimizer (`optax.chain(optimizer, params_ema(0.9999))`), it
    passes the updates through unchanged and averages the parameters they produce
    (Polyak & Juditsky 1992; the EMA weights of Tan & Le 2019 and DeiT, Touvron et al.
    2021). The average lives in the optimizer state, so it is sharded like the
    parameters and checkpointed with them; it starts at the initial parameters and is
    kept in float32 whatever the parameters' dtype.

    Arguments:
        decay: the weight of the old average, in `[0, 1)`.

    Returns:
        An optax transformation whose `update` needs `params`.
    """
    if not isinstance(decay, float | int) or isinstance(decay, bool) or not 0.0 <= decay < 1.0:
        raise ValueError(f"`ema_decay` must be a number in [0, 1). Received: {decay!r}.")

    def init(params):
        return ParamsEmaState(jax.tree.map(lambda p: jnp.array(p, jnp.float32), params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("`params_ema` needs `params` in `update(updates, state, params)`.")

        def average(ema, param, update):
            new_param = param.astype(jnp.float32) + update.astype(jnp.float32)
            return decay * ema + (1.0 - decay) * new_param

        return updates, ParamsEmaState(jax.tree.map(average, state.ema, params, updates))

    return optax.GradientTransformation(init, update)


def with_params_ema(
    optimizer: optax.GradientTransformation, decay: float | None
) -> optax.GradientTransformation:
    """`optimizer` followed by `params_ema(decay)`, or `optimizer` itself when `decay` is
    `None`: the optimizer `fit(..., ema_decay=decay)` trains with."""
    return optimizer if decay is None else optax.chain(optimizer, params_ema(decay))


def _is_ema_state(x) -> bool:
    return isinstance(x, ParamsEmaState)


def ema_model(state: TrainState) -> eqx.Module:
    """The model of `state` with its parameters replaced by their moving average.

    Raises:
        ValueError: the optimizer of `state` tracks no average (train with `ema_decay`).
    """
    found = [x for x in jax.tree.leaves(state.opt_state, is_leaf=_is_ema_state) if _is_ema_state(x)]
    if not found:
        raise ValueError(
            "The optimizer state holds no parameter average: train with `ema_decay` set "
            "(or chain `loops.params_ema(decay)` after the optimizer)."
        )
    params, rest = partition_trainable(state.model)
    averaged = jax.tree.map(lambda ema, p: ema.astype(p.dtype), found[0].ema, params)
    return eqx.combine(averaged, rest)
