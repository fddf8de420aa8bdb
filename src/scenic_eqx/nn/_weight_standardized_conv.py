"""A 2D convolution with weight standardisation, as in BiT."""

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray

from ._conv2d import convolve
from ._conv_init import he_uniform
from ._layer_norm import normalize


class StdConv2d(eqx.Module):
    """A bias-free 2D convolution whose kernel is standardised before use.

    Each output channel's kernel is shifted to zero mean and scaled to unit variance
    over its input channels and spatial taps, so the scale of the stored weight does
    not matter. Paired with GroupNorm it replaces BatchNorm in BiT.

    Arguments:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: side of the (square) kernel.
        stride: stride in both spatial directions.
        eps: added to the kernel variance; `1e-8` as in the BiT checkpoints ported by timm.
        key: PRNG key for initialisation (keyword only).

    Padding is symmetric, `kernel_size // 2` on each side (PyTorch-style), so a stride-1
    convolution keeps the spatial size.

    Reference: Qiao et al. 2019, "Micro-Batch Training with Batch-Channel Normalization
    and Weight Standardization", https://arxiv.org/abs/1903.10520.
    """

    weight: Float[Array, "out_channels in_channels kernel kernel"]
    stride: int = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        eps: float = 1e-8,
        *,
        key: PRNGKeyArray,
    ):
        # The kernel is standardised on every call, so only its shape matters here.
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = he_uniform(key, shape, fan=out_channels * kernel_size**2)
        self.stride = stride
        self.eps = eps

    def standardized_weight(self) -> Float[Array, "out_channels in_channels kernel kernel"]:
        """The kernel as applied: zero mean, unit variance per output channel."""
        # `normalize`'s hand-written backward pass compiles to fewer ops than autodiff's.
        flat = self.weight.reshape(self.weight.shape[0], -1)
        return normalize(flat, self.eps).reshape(self.weight.shape)

    def __call__(
        self, x: Float[Array, "in_channels height width"]
    ) -> Float[Array, "out_channels out_height out_width"]:
        """Convolves one channels-first feature map."""
        pad = self.weight.shape[-1] // 2
        # The statistics are float32 (`normalize`); the product is in `x`'s dtype.
        weight = self.standardized_weight().astype(x.dtype)
        return convolve(x, weight, (self.stride, self.stride), ((pad, pad), (pad, pad)))
