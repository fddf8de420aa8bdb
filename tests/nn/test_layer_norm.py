import equinox as eqx
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from scenic_eqx.nn import LayerNorm, normalize


def _reference(x, weight, bias, eps):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    lead = (1,) * (x.ndim - 1)
    return (x - mean) / jnp.sqrt(var + eps) * weight.reshape(*lead, -1) + bias.reshape(*lead, -1)


def test_values_match_hand_computed():
    x = jnp.array([[1.0, 2.0, 3.0, 6.0]])
    # mean 3, variance (4 + 1 + 0 + 9) / 4 = 3.5
    expected = (np.array([1.0, 2.0, 3.0, 6.0]) - 3.0) / np.sqrt(3.5 + 1e-6)
    np.testing.assert_allclose(LayerNorm(4)(x)[0], expected, rtol=1e-6)


@pytest.mark.parametrize("eps", [1e-6, 1e-12, 0.1])
def test_values_and_gradients_equal_plain_autodiff(getkey, eps):
    x = 3.0 + 2.0 * jax.random.normal(getkey(), (5, 8))
    norm = LayerNorm(8, eps=eps)
    norm = eqx.tree_at(
        lambda n: (n.weight, n.bias),
        norm,
        (jax.random.normal(getkey(), (8,)), jax.random.normal(getkey(), (8,))),
    )
    cotangent = jax.random.normal(getkey(), (5, 8))

    def loss(n, x):
        return jnp.sum(n(x) * cotangent)

    def reference_loss(n, x):
        return jnp.sum(_reference(x, n.weight, n.bias, eps) * cotangent)

    np.testing.assert_allclose(norm(x), _reference(x, norm.weight, norm.bias, eps), atol=1e-5)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(norm, x)
    reference = jax.jit(jax.grad(reference_loss, argnums=(0, 1)))(norm, x)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference)):
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4)


def test_gradient_under_vmap_and_second_use(getkey):
    x = jax.random.normal(getkey(), (3, 4, 8))
    grad = jax.jit(jax.grad(lambda x: jnp.sum(jax.vmap(lambda v: normalize(v, 1e-6))(x) ** 3)))(x)
    reference = jax.jit(jax.grad(lambda x: jnp.sum(_reference(x, jnp.ones(8), jnp.zeros(8), 1e-6) ** 3)))(x)
    np.testing.assert_allclose(grad, reference, atol=1e-4, rtol=1e-4)


def test_bfloat16_keeps_dtype(getkey):
    x = jax.random.normal(getkey(), (4, 16)).astype(jnp.bfloat16)
    y = LayerNorm(16, dtype=jnp.bfloat16)(x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        y.astype(jnp.float32),
        _reference(x.astype(jnp.float32), jnp.ones(16), jnp.zeros(16), 1e-6),
        atol=3e-2,
    )


def test_no_weight_no_bias():
    norm = LayerNorm(4, use_weight=False, use_bias=False)
    assert norm.weight is None and norm.bias is None
    assert norm(jnp.arange(4.0)[None]).shape == (1, 4)


def test_wrong_size_raises():
    with pytest.raises(ValueError, match=r"last axis of `x` \(shape \(2, 5\)\) must have size `dim` \(=4\)"):
        LayerNorm(4)(jnp.ones((2, 5)))


def test_scalar_input_is_a_jaxtyping_error():
    with pytest.raises(jaxtyping.TypeCheckError, match="dim"):
        LayerNorm(4)(jnp.ones(()))
