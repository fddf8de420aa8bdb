"""U-Net for per-pixel classification: Ronneberger et al. 2015.

Module tree (parameter paths; level `i` counts from the full resolution, 0):

    encoder[i].conv1.weight, encoder[i].norm1.{weight,bias},
    encoder[i].conv2.weight, encoder[i].norm2.{weight,bias}   i = 0..num_levels-1
    upsample[k].{weight,bias}     2x2 stride-2 transposed conv, deepest first
    decoder[k].conv1 / norm1 / conv2 / norm2                  k = 0..num_levels-2
    head.{weight,bias}            1x1 conv to the class logits
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._conv_init import he_conv2d
from ._group_norm import GroupNorm
from ._input_checks import check_image


class DoubleConv(eqx.Module):
    """`(3x3 conv -> GroupNorm -> ReLU)` twice: the U-Net's unit at every level."""

    conv1: eqx.nn.Conv2d
    norm1: GroupNorm
    conv2: eqx.nn.Conv2d
    norm2: GroupNorm

    def __init__(self, in_channels: int, out_channels: int, num_groups: int, *, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.conv1 = he_conv2d(in_channels, out_channels, 3, key=k1)
        self.norm1 = GroupNorm(num_groups, out_channels)
        self.conv2 = he_conv2d(out_channels, out_channels, 3, key=k2)
        self.norm2 = GroupNorm(num_groups, out_channels)

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, "c2 h w"]:
        x = jax.nn.relu(self.norm1(self.conv1(x)))
        return jax.nn.relu(self.norm2(self.conv2(x)))


class UNet(eqx.Module):
    """U-Net: an encoder that halves the resolution at each level, a decoder that doubles
    it back, and skip connections joining the two at each resolution.

    Arguments:
        num_classes: logits per pixel.
        in_channels: channels of the input image.
        base_features: channels at full resolution; level `i` has `base_features * 2**i`.
        num_levels: number of resolutions, the deepest included (the paper's net has 5);
            height and width must be divisible by `2**(num_levels - 1)`.
        num_groups: GroupNorm groups; must divide `base_features`.
        key: PRNG key for initialisation (keyword only).

    Unlike the paper, convolutions are padded ("same"), so the logits have the size of the
    input and no cropping is needed, and GroupNorm follows each convolution (the model
    stays stateless, and normalises each example on its own). Down is a 2x2 max pool, up a
    2x2 stride-2 transposed convolution halving the channels.

    Reference: Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical
    Image Segmentation", https://arxiv.org/abs/1505.04597.
    """

    encoder: tuple[DoubleConv, ...]
    upsample: tuple[eqx.nn.ConvTranspose2d, ...]
    decoder: tuple[DoubleConv, ...]
    head: eqx.nn.Conv2d

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        base_features: int = 32,
        num_levels: int = 4,
        num_groups: int = 8,
        *,
        key: PRNGKeyArray,
    ):
        if num_levels < 1:
            raise ValueError(f"`num_levels` (={num_levels}) must be at least 1.")
        if base_features < 1 or base_features % num_groups:
            raise ValueError(
                f"`base_features` (={base_features}) must be a positive multiple of "
                f"`num_groups` (={num_groups})."
            )
        enc_keys, up_keys, dec_keys, head_key = jax.random.split(key, 4)
        features = [base_features * 2**i for i in range(num_levels)]
        self.encoder = tuple(
            DoubleConv(c_in, c_out, num_groups, key=k)
            for c_in, c_out, k in zip(
                [in_channels, *features[:-1]], features, jax.random.split(enc_keys, num_levels)
            )
        )
        deep_to_shallow = list(reversed(features))
        pairs = list(itertools.pairwise(deep_to_shallow))
        self.upsample = tuple(
            he_conv2d(c_deep, c, 2, 2, use_bias=True, transpose=True, key=k)
            for (c_deep, c), k in zip(pairs, jax.random.split(up_keys, len(pairs)))
        )
        # Each decoder unit reads the skip and the upsampled map, concatenated.
        self.decoder = tuple(
            DoubleConv(2 * c, c, num_groups, key=k)
            for (_, c), k in zip(pairs, jax.random.split(dec_keys, len(pairs)))
        )
        self.head = he_conv2d(base_features, num_classes, 1, use_bias=True, key=head_key)

    def __call__(
        self,
        x: Float[Array, "height width channels"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "height width num_classes"]:
        """Per-pixel logits of one image; `key` is unused (the model has no randomness)."""
        del key
        check_image(x, model="UNet", in_channels=self.encoder[0].conv1.weight.shape[1])
        factor = 2 ** (len(self.encoder) - 1)
        if x.shape[0] % factor or x.shape[1] % factor:
            raise ValueError(
                f"The height and width of `x` must be divisible by 2**(num_levels - 1) "
                f"(={factor}). Received: {x.shape[0]}x{x.shape[1]}."
            )
        h = jnp.moveaxis(x, -1, 0)  # Equinox convolutions are channels-first.
        skips = []
        for level, unit in enumerate(self.encoder):
            if level:
                h = eqx.nn.MaxPool2d(2, 2)(h)
            h = unit(h)
            skips.append(h)
        skips.pop()  # The deepest map is the decoder's input, not a skip.
        for up, unit in zip(self.upsample, self.decoder):
            h = unit(jnp.concatenate([skips.pop(), up(h)], axis=0))
        return jnp.moveaxis(self.head(h), 0, -1)
