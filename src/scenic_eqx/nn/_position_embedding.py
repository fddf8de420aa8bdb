"""Position embeddings: learned, and fixed 1-D and 2-D sine-cosine."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray


class LearnedPositionEmbedding(eqx.Module):
    """Adds a learned embedding to each token position (Dosovitskiy et al. 2021).

    Arguments:
        num_tokens: number of token positions.
        dim: size of each token.
        key: PRNG key for initialisation (keyword only); normal with std 0.02.
    """

    weight: Float[Array, "tokens dim"]

    def __init__(self, num_tokens: int, dim: int, *, key: PRNGKeyArray):
        self.weight = 0.02 * jax.random.normal(key, (num_tokens, dim))

    def __call__(self, x: Float[Array, "tokens dim"]) -> Float[Array, "tokens dim"]:
        """`x` plus the embedding of each position."""
        return x + self.weight.astype(x.dtype)


def posemb_sincos_1d(
    num_tokens: int, dim: int, temperature: float = 10_000.0
) -> Float[np.ndarray, "tokens dim"]:
    """The fixed sine-cosine position embedding of Vaswani et al. 2017 (Section 3.5).

    `PE[pos, 2i] = sin(pos / temperature ** (2i / dim))` and
    `PE[pos, 2i + 1] = cos(pos / temperature ** (2i / dim))`.

    Arguments:
        num_tokens: number of positions, `0 .. num_tokens - 1`.
        dim: size of each embedding; even.
        temperature: sets the longest wavelength (`2 pi temperature`).

    Returns:
        A float32 numpy array `[num_tokens, dim]` (a constant under `jit`).
    """
    if dim % 2:
        raise ValueError(f"`dim` (={dim}) must be even for the sine-cosine embedding")
    angles = np.arange(num_tokens)[:, None] / temperature ** (np.arange(0, dim, 2) / dim)
    table = np.stack([np.sin(angles), np.cos(angles)], axis=-1)  # [tokens, dim/2, 2]
    return table.reshape(num_tokens, dim).astype(np.float32)


class SinCos1DPositionEmbedding(eqx.Module):
    """Adds the fixed 1-D sine-cosine embedding (`posemb_sincos_1d`) to a sequence of tokens.

    Token `num_prefix_tokens + p` gets the embedding of position `p`; for image patches
    that is their row-major index, as a sequence model sees them. It holds no arrays, so
    nothing here is trained.

    Arguments:
        num_tokens: number of token positions after the prefix.
        dim: size of each token; even.
        num_prefix_tokens: leading tokens (e.g. a class token) that get no embedding.
    """

    num_tokens: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    num_prefix_tokens: int = eqx.field(static=True)

    def __init__(self, num_tokens: int, dim: int, *, num_prefix_tokens: int = 0):
        posemb_sincos_1d(1, dim)  # Validates `dim` now rather than at the first call.
        self.num_tokens, self.dim = num_tokens, dim
        self.num_prefix_tokens = num_prefix_tokens

    def __call__(self, x: Float[Array, "tokens dim"]) -> Float[Array, "tokens dim"]:
        """`x` plus the embedding of each position."""
        table = posemb_sincos_1d(self.num_tokens, self.dim)
        table = np.pad(table, ((self.num_prefix_tokens, 0), (0, 0)))
        return x + jnp.asarray(table, x.dtype)


def posemb_sincos_2d(
    height: int, width: int, dim: int, temperature: float = 10_000.0
) -> Float[np.ndarray, "tokens dim"]:
    """The fixed 2-D sine-cosine embedding of a `height x width` grid, row-major.

    As in MoCo v3 (Chen et al. 2021) and big_vision: a quarter of the channels each for
    `sin(y w)`, `cos(y w)`, `sin(x w)`, `cos(x w)`, with frequencies
    `w_i = temperature ** -(i / (dim/4 - 1))`, `i = 0 .. dim/4 - 1`; row `r * width + c` has `y = r`, `x = c`.

    Arguments:
        height, width: the grid of tokens.
        dim: size of each embedding; a multiple of 4, at least 8.
        temperature: the longest wavelength.

    Returns:
        A numpy array `[height * width, dim]` (a constant under `jit`).
    """
    if dim % 4 or dim < 8:
        raise ValueError(f"`dim` (={dim}) must be a multiple of 4, at least 8, for the 2-D sin-cos embedding")
    y, x = np.mgrid[:height, :width]
    omega = 1.0 / temperature ** (np.arange(dim // 4) / (dim // 4 - 1))
    y = y.reshape(-1, 1) * omega[None]
    x = x.reshape(-1, 1) * omega[None]
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(np.float32)


class SinCos2DPositionEmbedding(eqx.Module):
    """Adds the fixed 2-D sine-cosine embedding (`posemb_sincos_2d`) to a token grid.

    It holds no arrays, so nothing here is trained.

    Arguments:
        height, width: the grid of tokens (row-major).
        dim: size of each token; a multiple of 4, at least 8.
        num_prefix_tokens: leading tokens (e.g. a class token) that get no embedding.
    """

    height: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    num_prefix_tokens: int = eqx.field(static=True)

    def __init__(self, height: int, width: int, dim: int, *, num_prefix_tokens: int = 0):
        posemb_sincos_2d(1, 1, dim)  # Validates `dim` now rather than at the first call.
        self.height, self.width, self.dim = height, width, dim
        self.num_prefix_tokens = num_prefix_tokens

    def __call__(self, x: Float[Array, "tokens dim"]) -> Float[Array, "tokens dim"]:
        """`x` plus the embedding of each position."""
        table = posemb_sincos_2d(self.height, self.width, self.dim)
        table = np.pad(table, ((self.num_prefix_tokens, 0), (0, 0)))
        return x + jnp.asarray(table, x.dtype)
