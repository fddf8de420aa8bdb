"""Tubelet embedding: cut a video into 3-D patches and project each to a token."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._input_checks import check_input


def _triple(value: int | tuple[int, int, int], name: str) -> tuple[int, int, int]:
    """`value` as a `(time, height, width)` triple of positive ints."""
    triple = (value, value, value) if isinstance(value, int) else tuple(value)
    if len(triple) != 3 or not all(isinstance(v, int) and v > 0 for v in triple):
        raise ValueError(f"`{name}` must be a positive int or a triple of them. Received: {value!r}.")
    return triple


class TubeletEmbedding(eqx.Module):
    """A 3-D convolution whose stride is its kernel size (Arnab et al. 2021, ViViT, eq. 3).

    Each non-overlapping `tubelet_size` tube of `time x height x width` pixels becomes
    one token, so the tokens mix time as well as space (with `tubelet_size[0] == 1`
    this is ViT's patch embedding applied to every frame). `weight` has PyTorch's 3-D
    convolution layout `[dim, in_channels, tubelet_time, tubelet_height, tubelet_width]`.

    Arguments:
        in_channels: channels of the input frames.
        dim: size of each output token.
        tubelet_size: `(time, height, width)` of a tube, or one int for all three.
        key: PRNG key for initialisation (keyword only).
    """

    weight: Float[Array, "dim in_channels tubelet_time tubelet_height tubelet_width"]
    bias: Float[Array, " dim"]
    tubelet_size: tuple[int, int, int] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        dim: int,
        tubelet_size: int | tuple[int, int, int],
        *,
        key: PRNGKeyArray,
    ):
        self.tubelet_size = _triple(tubelet_size, "tubelet_size")
        # LeCun normal over the fan-in of one tube, not truncated (as `PatchEmbedding`).
        init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=(1, 2, 3, 4), out_axis=0)
        self.weight = init(key, (dim, in_channels, *self.tubelet_size))
        self.bias = jnp.zeros((dim,))

    def grid(self, time: int, height: int, width: int) -> tuple[int, int, int]:
        """The number of tubes along time, height and width of a `time x height x width` video."""
        pt, ph, pw = self.tubelet_size
        if time % pt or height % ph or width % pw:
            raise ValueError(
                f"The video size must be divisible by `tubelet_size` (={pt}x{ph}x{pw}). "
                f"Received: {time}x{height}x{width}."
            )
        return time // pt, height // ph, width // pw

    def __call__(self, x: Float[Array, "time height width channels"]) -> Float[Array, "tokens dim"]:
        """Tokens of the tubes, time-major then row-major: `nt * nh * nw` of them."""
        check_input(
            x,
            ("time", "height", "width", "channels"),
            model="TubeletEmbedding",
            sizes={"channels": (f"`in_channels` (={self.weight.shape[1]})", self.weight.shape[1])},
        )
        nt, nh, nw = self.grid(*x.shape[:3])
        pt, ph, pw = self.tubelet_size
        tubes = x.reshape(nt, pt, nh, ph, nw, pw, x.shape[3])
        tokens = jnp.einsum("aibjckz,dzijk->abcd", tubes, self.weight.astype(x.dtype))
        return tokens.reshape(-1, self.weight.shape[0]) + self.bias.astype(x.dtype)[None]
