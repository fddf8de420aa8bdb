"""An exponential moving average of the parameters, in the optimizer state."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_models import DropoutMLP, make_batches, params, run

from scenic_eqx import loops, tasks


def _arrays(model):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]


def test_params_ema_follows_its_recurrence():
    params0 = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(0.5)}
    optimizer = optax.chain(optax.sgd(1.0), loops.params_ema(0.5))
    state = optimizer.init(params0)
    grads = [
        {"w": jnp.array([1.0, -1.0]), "b": jnp.array(2.0)},
        {"w": jnp.array([0.5, 0.0]), "b": jnp.array(-1.0)},
    ]
    current, ema = params0, params0
    for g in grads:
        updates, state = optimizer.update(g, state, current)
        current = optax.apply_updates(current, updates)
        ema = jax.tree.map(lambda e, p: 0.5 * e + 0.5 * p, ema, current)
    # w: [1, 2] -> [0, 3] -> [-0.5, 3]; ema: [0.5, 2.5] -> [0, 2.75]
    np.testing.assert_allclose(state[1].ema["w"], [0.0, 2.75])
    for name in params0:
        np.testing.assert_allclose(state[1].ema[name], ema[name])


def test_fit_evaluates_and_checkpoints_the_average(tmp_path):
    model = DropoutMLP(key=jax.random.key(0))
    state, history = run(
        model,
        6,
        log_every=3,
        ema_decay=0.5,
        eval_batches=make_batches(1, seed=1),
        eval_every=3,
        workdir=tmp_path,
        checkpoint_every=3,
    )
    assert {"eval_accuracy", "eval_ema_accuracy", "eval_ema_loss"} <= set(history[-1])
    average = loops.ema_model(state)
    assert all(a.dtype == np.float32 for a in jax.tree.leaves(state.opt_state[1].ema))
    assert not all(np.allclose(a, b) for a, b in zip(params(state), _arrays(average)))
    np.testing.assert_allclose(
        history[-1]["eval_ema_loss"],
        loops.evaluate(average, tasks.ClassificationTask(), make_batches(1, seed=1))["loss"],
        rtol=1e-6,
    )
    # The average is part of the checkpoint: a resumed run restores it.
    resumed, _ = run(model, 6, log_every=3, ema_decay=0.5, workdir=tmp_path, checkpoint_every=3)
    for a, b in zip(jax.tree.leaves(resumed.opt_state[1].ema), jax.tree.leaves(state.opt_state[1].ema)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_decay_zero_averages_nothing():
    state, _ = run(DropoutMLP(key=jax.random.key(0)), 3, ema_decay=0.0)
    for a, b in zip(params(state), _arrays(loops.ema_model(state))):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_ema_model_without_an_average_is_an_error():
    state, _ = run(DropoutMLP(key=jax.random.key(0)), 1)
    with pytest.raises(ValueError, match="holds no parameter average: train with `ema_decay`"):
        loops.ema_model(state)
