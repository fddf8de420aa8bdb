import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.nn import StochasticDepth


def test_drops_whole_examples_at_rate_and_rescales(getkey):
    layer = StochasticDepth(0.25)
    x = jnp.ones((4000, 3, 2))
    keys = jax.random.split(getkey(), 4000)
    y = jax.jit(jax.vmap(lambda x, k: layer(x, key=k)))(x, keys)
    dropped = np.all(y == 0, axis=(1, 2))
    kept = np.all(np.isclose(y, 1 / 0.75), axis=(1, 2))
    assert np.all(dropped | kept)  # Whole examples, never single entries.
    # 4000 draws: the standard error of the fraction is ~0.007.
    assert abs(dropped.mean() - 0.25) < 0.03
    assert abs(float(jnp.mean(y)) - 1.0) < 0.05  # Unbiased in expectation.


def test_inference_and_zero_rate_are_identity(getkey):
    x = jax.random.normal(getkey(), (3, 2))
    np.testing.assert_array_equal(eqx.nn.inference_mode(StochasticDepth(0.5))(x), x)
    np.testing.assert_array_equal(StochasticDepth(0.0)(x), x)


def test_errors(getkey):
    with pytest.raises(ValueError, match=r"`rate` \(=1.0\) must be in \[0, 1\)"):
        StochasticDepth(1.0)
    with pytest.raises(ValueError, match="`key` is required for stochastic depth"):
        StochasticDepth(0.1)(jnp.ones(3))
