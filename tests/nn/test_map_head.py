import equinox as eqx
import jax
import numpy as np

from scenic_eqx.nn import MAPHead


def test_pools_to_one_vector_independent_of_token_order(getkey):
    head = eqx.filter_jit(MAPHead(8, 2, 16, key=getkey()))
    x = jax.random.normal(getkey(), (6, 8))
    out = head(x)
    assert out.shape == (8,)
    np.testing.assert_allclose(out, head(x[::-1]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(out, head(2 * x))
