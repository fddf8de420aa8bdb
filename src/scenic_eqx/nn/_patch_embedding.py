"""Patch embedding: cut an image into patches and project each to a token."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._input_checks import check_image


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """`value` as a `(height, width)` pair of positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"`{name}` must be a positive int or a pair of them. Received: {value!r}.")
    return pair


class PatchEmbedding(eqx.Module):
    """A convolution whose stride is its kernel size (Dosovitskiy et al. 2021).

    Equivalent to flattening each non-overlapping `patch_size` patch and applying a
    shared linear map. `weight` has PyTorch's convolution layout
    `[dim, in_channels, patch_height, patch_width]`.

    Arguments:
        in_channels: channels of the input image.
        dim: size of each output token.
        patch_size: side of a patch, an int or `(height, width)`.
        use_bias: whether to add a learned bias (OpenAI's CLIP has none).
        key: PRNG key for initialisation (keyword only).
    """

    weight: Float[Array, "dim in_channels patch_height patch_width"]
    bias: Float[Array, " dim"] | None
    patch_size: tuple[int, int] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        dim: int,
        patch_size: int | tuple[int, int],
        *,
        use_bias: bool = True,
        key: PRNGKeyArray,
    ):
        self.patch_size = _pair(patch_size, "patch_size")
        # LeCun normal over the fan-in of one patch, as Flax's default for convolutions
        # but not truncated: the truncated sampler takes seconds to compile on CPU.
        init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=(1, 2, 3), out_axis=0)
        self.weight = init(key, (dim, in_channels, *self.patch_size))
        self.bias = jnp.zeros((dim,)) if use_bias else None

    def __call__(self, x: Float[Array, "height width channels"]) -> Float[Array, "tokens dim"]:
        """Tokens of the patches in row-major order: `height/ph * width/pw` of them."""
        check_image(x, model="PatchEmbedding", in_channels=self.weight.shape[1])
        height, width, channels = x.shape
        ph, pw = self.patch_size
        if height % ph or width % pw:
            raise ValueError(
                f"The image size must be divisible by `patch_size` (={ph}x{pw}). Received: {height}x{width}."
            )
        patches = x.reshape(height // ph, ph, width // pw, pw, channels)
        tokens = jnp.einsum("aibjc,dcij->abd", patches, self.weight.astype(x.dtype))
        tokens = tokens.reshape(-1, self.weight.shape[0])
        return tokens if self.bias is None else tokens + self.bias.astype(x.dtype)[None]
