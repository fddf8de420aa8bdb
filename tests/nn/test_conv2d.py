"""`nn.Conv2d`: the same results and gradients as Equinox's convolution, whichever way
`convolve` computes them (a matrix product for 1x1 kernels and small outputs on CPU)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import nn
from scenic_eqx.nn._conv2d import as_product

CASES = [  # in, out, kernel, stride, padding, input size, bias: (computed on CPU as)
    (8, 16, 1, 1, 0, 6, False),  # 1x1: a product
    (8, 16, 1, 2, 0, 7, True),  # strided 1x1, odd size: a product
    (6, 4, 3, 1, 1, 4, True),  # 3x3 with a 4x4 output: a product
    (6, 4, 3, 2, 1, 4, False),  # strided 3x3, 2x2 output: a product
    (5, 3, 3, 1, 1, 2, False),  # 3x3 on 2x2, mostly padding: a product
    (3, 4, 7, 2, 3, 8, True),  # 7x7 stride 2, 4x4 output: a product
    (3, 4, 3, 1, 1, 9, True),  # 9x9 output: a convolution
    (4, 4, 2, 2, 0, 10, False),  # a patch embedding, 5x5 output: a convolution
]


@pytest.mark.parametrize("in_channels, out_channels, kernel, stride, padding, size, use_bias", CASES)
def test_outputs_and_gradients_equal_equinox_convolution(
    in_channels, out_channels, kernel, stride, padding, size, use_bias
):
    key_conv, key_x = jax.random.split(jax.random.key(kernel * 100 + stride * 10 + size))
    reference = eqx.nn.Conv2d(
        in_channels, out_channels, kernel, stride, padding, use_bias=use_bias, key=key_conv
    )
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, use_bias=use_bias, key=key_conv)
    x = jax.random.normal(key_x, (3, in_channels, size, size))

    def loss(model, x):
        y = jax.vmap(model)(x)
        return jnp.sum(y * jnp.cos(y)), y

    (_, want), (want_model, want_x) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        reference, x
    )
    (_, got), (got_model, got_x) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(conv, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_x, want_x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_model.weight, want_model.weight, rtol=1e-4, atol=1e-5)
    if use_bias:
        np.testing.assert_allclose(got_model.bias, want_model.bias, rtol=1e-4, atol=1e-5)


def test_the_product_is_used_on_cpu_for_1x1_kernels_and_small_outputs_only():
    assert as_product((1, 1), (56, 56), "cpu") and as_product((3, 3), (4, 4), "cpu")
    assert not as_product((3, 3), (5, 4), "cpu") and not as_product((7, 7), (112, 112), "cpu")
    assert not as_product((1, 1), (2, 2), "gpu") and not as_product((3, 3), (2, 2), "tpu")


def test_dilated_and_grouped_convolutions_run_as_equinox_s():
    key_conv, key_x = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (4, 6, 6))
    for kwargs in ({"dilation": 2, "padding": 2}, {"groups": 2, "padding": 1}, {"padding": "SAME"}):
        reference = eqx.nn.Conv2d(4, 4, 3, key=key_conv, **kwargs)
        conv = nn.Conv2d(4, 4, 3, key=key_conv, **kwargs)
        np.testing.assert_allclose(conv(x), reference(x), rtol=1e-6)
