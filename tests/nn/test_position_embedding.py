import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.nn import (
    LearnedPositionEmbedding,
    SinCos1DPositionEmbedding,
    SinCos2DPositionEmbedding,
    posemb_sincos_2d,
)


def test_sincos_literal_values():
    table = posemb_sincos_2d(2, 2, 8)
    # dim 8: two frequencies, 1 and 1/10000; channels sin(x w), cos(x w), sin(y w), cos(y w).
    s, c = np.sin(1.0), np.cos(1.0)
    sw, cw = np.sin(1e-4), np.cos(1e-4)
    expected = [
        [0, 0, 1, 1, 0, 0, 1, 1],  # (y, x) = (0, 0)
        [s, sw, c, cw, 0, 0, 1, 1],  # (0, 1)
        [0, 0, 1, 1, s, sw, c, cw],  # (1, 0)
        [s, sw, c, cw, s, sw, c, cw],  # (1, 1)
    ]
    np.testing.assert_allclose(table, expected, rtol=1e-6, atol=1e-7)


def test_sincos_module_adds_table_after_prefix_tokens():
    layer = SinCos2DPositionEmbedding(2, 3, 8, num_prefix_tokens=1)
    out = layer(jnp.ones((7, 8)))
    np.testing.assert_array_equal(out[0], np.ones(8))
    np.testing.assert_allclose(out[1:], 1 + posemb_sincos_2d(2, 3, 8), rtol=1e-6)
    assert not jax.tree.leaves(layer)  # Nothing to train.


def test_learned(getkey):
    layer = LearnedPositionEmbedding(5, 4, key=getkey())
    x = jax.random.normal(getkey(), (5, 4))
    np.testing.assert_allclose(layer(x), x + layer.weight)
    assert 0.005 < float(jnp.std(layer.weight)) < 0.05


def test_sincos_dim_error():
    with pytest.raises(ValueError, match=r"`dim` \(=6\) must be a multiple of 4"):
        SinCos2DPositionEmbedding(2, 2, 6)


def test_sincos_1d_module_literal_values_after_a_prefix_token():
    layer = SinCos1DPositionEmbedding(3, 6, num_prefix_tokens=1)
    out = layer(jnp.zeros((4, 6)))
    # dim 6: frequencies 10000 ** -(2i / 6) = 1, 0.0464159, 0.0021544; channels sin, cos of
    # each in turn (Vaswani et al. 2017). The prefix token gets nothing, position 0 gets
    # sin 0 = 0 and cos 0 = 1.
    expected = [
        [0, 0, 0, 0, 0, 0],
        [0, 1, 0, 1, 0, 1],
        [0.84147098, 0.54030231, 0.04639922, 0.99892298, 0.00215443, 0.99999768],
        [0.90929743, -0.41614684, 0.09269850, 0.99569422, 0.00430886, 0.99999072],
    ]
    np.testing.assert_allclose(out, expected, atol=1e-7)
    assert not jax.tree.leaves(layer)  # Nothing to train.


def test_sincos_1d_dim_error():
    with pytest.raises(ValueError, match=r"`dim` \(=5\) must be even"):
        SinCos1DPositionEmbedding(4, 5)
