import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.nn import MlpBlock, gelu


def test_gelu_literal_values():
    x = jnp.array([-1.0, 0.0, 1.0, 2.0])
    # x * Phi(x): Phi(1) = 0.8413447, Phi(2) = 0.9772499.
    np.testing.assert_allclose(gelu(x), [-0.1586553, 0.0, 0.8413447, 1.9544997], rtol=1e-6)
    np.testing.assert_allclose(gelu(x, approximate=True), [-0.1588080, 0.0, 0.8411920, 1.9545977], rtol=1e-6)
    np.testing.assert_allclose(gelu(x), jax.nn.gelu(x, approximate=False), rtol=1e-6)


@pytest.mark.parametrize("approximate", [False, True])
def test_block_is_dense_gelu_dense(getkey, approximate):
    block = MlpBlock(4, 8, gelu_approximate=approximate, key=getkey())
    x = jax.random.normal(getkey(), (3, 4))
    hidden = x @ block.dense1.weight.T + block.dense1.bias[None]
    expected = jax.nn.gelu(hidden, approximate=approximate) @ block.dense2.weight.T
    out = eqx.filter_jit(block)(x)
    assert out.shape == (3, 4) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, expected + block.dense2.bias[None], rtol=1e-5, atol=1e-6)


def test_dropout_in_training_only(getkey):
    block = MlpBlock(4, 8, dropout_rate=0.5, key=getkey())
    x = jax.random.normal(getkey(), (3, 4))
    call = eqx.filter_jit(lambda b, x, k: b(x, key=k))
    assert not np.allclose(call(block, x, getkey()), call(block, x, getkey()))
    inference = eqx.nn.inference_mode(block)
    np.testing.assert_array_equal(call(inference, x, getkey()), call(inference, x, getkey()))
