"""BatchNorm: Equinox's results in float32, float32 statistics from bfloat16 inputs."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.nn._batch_norm import BatchNorm


def _is_state_index(x) -> bool:
    return isinstance(x, eqx.nn.StateIndex)


@eqx.filter_jit
def _apply(norm, x, state):
    return jax.vmap(norm, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x, state)


def _with_affine(norm, getkey):
    weight, bias = (jax.random.normal(getkey(), norm.weight.shape) for _ in range(2))
    return eqx.tree_at(lambda n: (n.weight, n.bias), norm, (weight, bias))


def test_float32_equals_equinox(getkey):
    # Statistics and counter to the bit; outputs to float32 rounding (one per-channel
    # factor `weight / std` where Equinox divides by `std`, then multiplies by `weight`).
    ours = _with_affine(BatchNorm(5, eps=1e-3, momentum=0.8), getkey)
    reference = eqx.nn.BatchNorm(5, "batch", eps=1e-3, momentum=0.8, mode="batch")
    reference = eqx.tree_at(lambda n: (n.weight, n.bias), reference, (ours.weight, ours.bias))
    x = 3.0 * jax.random.normal(getkey(), (4, 5, 3, 2)) + 2.0
    x_next = jax.random.normal(getkey(), (4, 5, 3, 2))
    results = []
    for norm in (ours, reference):
        state = eqx.nn.State(norm)
        y, state = _apply(norm, x, state)
        y_next, state = _apply(norm, x_next, state)
        y_inference, state = _apply(eqx.nn.inference_mode(norm), x, state)
        results.append((y, y_next, y_inference, state.get(norm.batch_state_index),
                        state.get(norm.batch_counter)))  # fmt: skip
    for i, (a, b) in enumerate(zip(*map(jax.tree.leaves, results), strict=True)):
        assert a.dtype == b.dtype
        if i < 3:  # y, y_next, y_inference
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(a, b)


def test_bfloat16_input_gives_float32_statistics_and_bfloat16_output(getkey):
    # A large mean over a small spread: a bfloat16 mean (steps of 0.5 near 100) would
    # be off by up to a quarter of the standard deviation, and so would every output.
    x32 = 100.0 + jax.random.normal(getkey(), (8, 3, 4, 4))
    x = x32.astype(jnp.bfloat16)
    norm = BatchNorm(3)
    state = eqx.nn.State(norm)
    y, new_state = _apply(norm, x, state)
    assert y.dtype == jnp.bfloat16
    mean, var = new_state.get(norm.batch_state_index)
    assert mean.dtype == var.dtype == jnp.float32
    # The statistics of the bfloat16 values, taken in float64.
    values = np.asarray(x, np.float64)
    batch_mean, batch_var = values.mean(axis=(0, 2, 3)), values.var(axis=(0, 2, 3))
    np.testing.assert_allclose(mean, 0.1 * batch_mean, rtol=1e-6)
    np.testing.assert_allclose(var, 0.9 + 0.1 * batch_var, rtol=1e-6)
    # The output: the float32 normalisation of the same values, rounded once.
    y32, _ = _apply(norm, x.astype(jnp.float32), state)
    np.testing.assert_allclose(y.astype(jnp.float32), y32, rtol=2**-8, atol=1e-6)

    inference = eqx.nn.inference_mode(norm)
    y_inference, after = _apply(inference, x, new_state)
    assert y_inference.dtype == jnp.bfloat16  # Float32 statistics do not promote it.
    y32_inference, _ = _apply(inference, x.astype(jnp.float32), new_state)
    np.testing.assert_allclose(y_inference.astype(jnp.float32), y32_inference, rtol=2**-8)
    np.testing.assert_array_equal(after.get(norm.batch_state_index)[0], mean)


def test_gradients_through_bfloat16_compute_are_close_to_float32(getkey):
    norm = _with_affine(BatchNorm(3), getkey)
    params, static = eqx.partition(norm, eqx.is_inexact_array, is_leaf=_is_state_index)
    x = jax.random.normal(getkey(), (4, 3, 2, 2))
    cotangent = jax.random.normal(getkey(), (4, 3, 2, 2))
    state = eqx.nn.State(norm)

    @functools.partial(jax.jit, static_argnums=2)
    def grads(params, x, dtype):
        def loss(params, x):
            norm = eqx.combine(jax.tree.map(lambda a: a.astype(dtype), params), static)
            batched = jax.vmap(norm, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
            y, _ = batched(x.astype(dtype), state)
            return jnp.sum(y.astype(jnp.float32) * cotangent)

        return jax.grad(loss, argnums=(0, 1))(params, x)

    for a, b in zip(*(jax.tree.leaves(grads(params, x, d)) for d in (jnp.bfloat16, jnp.float32))):
        assert a.dtype == jnp.float32  # Gradients of the float32 parameters and input.
        np.testing.assert_allclose(a, b, atol=2e-2 * float(jnp.max(jnp.abs(b))))


def test_keeps_equinox_layout_for_weight_import():
    norm = BatchNorm(4)
    assert isinstance(norm, eqx.nn.BatchNorm)
    assert norm.mode == "batch" and norm.axis_name == "batch"
    state = eqx.nn.State(norm)
    mean, var = state.get(norm.batch_state_index)
    np.testing.assert_array_equal(mean, np.zeros(4))
    np.testing.assert_array_equal(var, np.ones(4))
    assert state.get(norm.batch_counter) == 0


def test_bad_momentum_is_named():
    with pytest.raises(ValueError, match=r"`momentum` \(=1.0\) must be in \(0, 1\)"):
        BatchNorm(4, momentum=1.0)
