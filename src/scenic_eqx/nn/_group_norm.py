"""Group normalisation of channels-first maps, on the hand-differentiated `normalize`."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._layer_norm import normalize


class GroupNorm(eqx.Module):
    """Normalises each group of channels over its channels and positions (Wu & He 2018).

    Same parameters as `eqx.nn.GroupNorm` (`weight`, `bias`, one per channel) and the
    same result, but the weightless core is `normalize`, whose hand-written backward pass
    keeps XLA:CPU's fusions small (docs/performance.md, "LayerNorm backward and XLA:CPU
    fusion"): with Equinox's version a deep BiT compiled several times slower. Scale and
    bias stay plain differentiable operations outside that core, so a `vmap`ped model
    gets one weight gradient.

    Arguments:
        num_groups: number of channel groups; must divide `channels`.
        channels: channels of the input (its first axis).
        eps: added to the variance.

    Reference: Wu & He 2018, "Group Normalization", https://arxiv.org/abs/1803.08494.
    """

    weight: Float[Array, " channels"]
    bias: Float[Array, " channels"]
    num_groups: int = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, num_groups: int, channels: int, eps: float = 1e-5):
        if channels % num_groups:
            raise ValueError(f"`channels` (={channels}) must be divisible by `num_groups` (={num_groups}).")
        self.weight = jnp.ones(channels)
        self.bias = jnp.zeros(channels)
        self.num_groups = num_groups
        self.eps = eps

    def __call__(self, x: Float[Array, "channels height width"]) -> Float[Array, "channels height width"]:
        """Normalises one channels-first map, then scales and shifts each channel."""
        grouped = x.reshape(self.num_groups, -1)
        y = normalize(grouped, self.eps).reshape(x.shape)
        per_channel = (-1,) + (1,) * (x.ndim - 1)
        # In the input's dtype, as `LayerNorm`: float32 parameters do not promote a
        # bfloat16 map (the statistics are float32 inside `normalize` either way).
        weight = self.weight.astype(y.dtype).reshape(per_channel)
        return y * weight + self.bias.astype(y.dtype).reshape(per_channel)
