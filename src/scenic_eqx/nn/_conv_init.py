"""Convolutions with He initialisation, drawn so that they are quick to build."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._conv2d import Conv2d


def he_uniform(key: PRNGKeyArray, shape: tuple[int, ...], fan: int) -> Float[Array, "..."]:
    """Uniform weights with variance `2 / fan` (He et al. 2015, for ReLU networks).

    Built eagerly, each random draw of a new shape compiles its own XLA kernel, which on
    CPU dominated a model's construction time. So the draw is flat, of a power-of-16 size
    (three or four kernels serve every weight shape of a model), then cut and reshaped;
    and uniform, not normal: a normal draw compiles slower and only the variance matters.
    """
    bound = math.sqrt(6.0 / fan)
    size = math.prod(shape)
    bucket = 1 << -(-(size - 1).bit_length() // 4) * 4  # the next power of 16
    flat = jax.random.uniform(key, (bucket,), minval=-bound, maxval=bound)
    return flat[:size].reshape(shape)


def he_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    *,
    use_bias: bool = False,
    transpose: bool = False,
    key: PRNGKeyArray,
) -> Conv2d | eqx.nn.ConvTranspose2d:
    """A 2D conv (`Conv2d`, fast on CPU) or an Equinox transposed conv, initialised as
    torchvision's ResNet: variance `2 / fan_out`, zero bias.

    A plain conv pads `kernel_size // 2` on each side (PyTorch-style: a stride-1 conv
    keeps the size); a transposed one pads nothing (`kernel_size == stride` multiplies
    the size by `stride`).
    """
    if transpose:
        make = lambda k: eqx.nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size, stride, use_bias=use_bias, key=k
        )
    else:
        make = lambda k: Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            use_bias=use_bias,
            key=k,
        )
    # Only the structure is taken from Equinox: drawing its default init too would
    # double the kernels compiled per shape.
    conv = eqx.filter_eval_shape(make, key)
    weight = he_uniform(key, conv.weight.shape, fan=out_channels * kernel_size**2)
    conv = eqx.tree_at(lambda c: c.weight, conv, weight)
    if use_bias:
        conv = eqx.tree_at(lambda c: c.bias, conv, jnp.zeros(conv.bias.shape))
    return conv
