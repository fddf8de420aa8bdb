"""Mixed precision: bfloat16 compute, float32 parameters, gradients, optimizer state, loss and checkpoints."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from tiny_models import DropoutMLP, make_batches, params, run

from scenic_eqx import loops, nn, tasks


def test_policy_casts_floating_arrays_only():
    policy = loops.get_precision("bfloat16")
    tree = {"x": jnp.ones(2), "i": jnp.arange(2), "b": jnp.array([True]), "f": 0.5}
    cast = policy.cast_to_compute(tree)
    assert cast["x"].dtype == jnp.bfloat16 and cast["i"].dtype == tree["i"].dtype
    assert cast["b"].dtype == jnp.bool_ and cast["f"] == 0.5
    assert policy.cast_to_output(cast)["x"].dtype == jnp.float32
    assert loops.get_precision(policy) is policy
    with pytest.raises(
        ValueError, match=r"`precision` must be one of 'float32', 'bfloat16'.*Received: 'half'"
    ):
        loops.get_precision("half")


def _recorded_gradients() -> optax.GradientTransformation:
    """Passes updates through and keeps the last ones (the gradients, first in a chain)."""
    return optax.GradientTransformation(
        lambda params: jax.tree.map(jnp.zeros_like, params),
        lambda updates, state, params=None: (updates, updates),
    )


def test_bfloat16_step_computes_in_bfloat16_and_keeps_float32_state():
    model = nn.ViT(3, 4, 16, 2, 2, 32, 8, in_channels=1, key=jax.random.key(0))
    optimizer = optax.chain(_recorded_gradients(), optax.adam(1e-3))
    task = tasks.ClassificationTask()
    state = loops.init_train_state(model, optimizer, key=jax.random.key(1))
    batch = {"inputs": jnp.ones((4, 8, 8, 1)), "label": jnp.arange(4) % 3, "batch_mask": jnp.ones(4)}
    step = loops.make_train_step(task, optimizer, precision="bfloat16")
    jaxpr = str(eqx.filter_make_jaxpr(step)(state, batch)[0])
    assert "bf16" in jaxpr and "dot_general" in jaxpr
    new_state, loss, metrics = eqx.filter_jit(step)(state, batch)
    assert loss.dtype == jnp.float32
    floating = lambda tree: jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))
    gradients, adam = new_state.opt_state
    for tree in (new_state.model, gradients, adam):
        assert floating(tree) and all(x.dtype == jnp.float32 for x in floating(tree))
    assert all(jnp.all(jnp.isfinite(g)) and jnp.any(g != 0) for g in floating(gradients))
    # The float32 step's loss, to bfloat16's precision.
    reference = eqx.filter_jit(loops.make_train_step(task, optimizer))(state, batch)[1]
    np.testing.assert_allclose(loss, reference, rtol=2e-2)


def test_bfloat16_training_learns_and_checkpoints_float32(tmp_path):
    model = DropoutMLP(key=jax.random.key(0))
    single, history = run(model, 12, log_every=4, precision="bfloat16", workdir=tmp_path, checkpoint_every=6)
    float32, float32_history = run(model, 12, log_every=4)
    assert history[-1]["loss"] < history[0]["loss"]
    np.testing.assert_allclose(history[-1]["loss"], float32_history[-1]["loss"], rtol=3e-2)
    assert all(p.dtype == np.float32 for p in params(single))
    metadata = ocp.StandardCheckpointer().metadata(tmp_path / "checkpoints" / "12" / "train_state")
    dtypes = {str(leaf.dtype) for leaf in metadata.item_metadata.tree}
    assert dtypes == {"float32", "int32", "uint32"}  # parameters, Adam moments; step; key


def test_evaluate_in_bfloat16_is_close_to_float32():
    model = DropoutMLP(key=jax.random.key(0))
    task, batches = tasks.ClassificationTask(), make_batches(2, seed=1)
    half = loops.evaluate(model, task, batches, precision="bfloat16")
    full = loops.evaluate(model, task, batches)
    np.testing.assert_allclose(half["loss"], full["loss"], rtol=2e-2)
