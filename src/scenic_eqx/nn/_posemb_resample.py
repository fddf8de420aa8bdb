"""Fitting a checkpoint's learned position embeddings to a model's token grid."""

import math

import jax
import jax.numpy as jnp
import numpy as np


def resample_posemb_grid(
    grid: np.ndarray, old_size: tuple[int, int], new_size: tuple[int, int]
) -> np.ndarray:
    """Bilinear resize of a row-major grid of position embeddings.

    "High-resolution fine-tuning" of the ViT paper (Dosovitskiy et al. 2021, section
    3.2): the embeddings are interpolated in 2-D according to their location in the
    image. Pixel centres are aligned (`align_corners=False`, as timm and PyTorch's
    `interpolate`), without antialiasing. Google's own code zooms with
    `scipy.ndimage.zoom(order=1)`, which aligns the corner embeddings instead; the two
    agree at the corners and differ slightly inside.

    Arguments:
        grid: `[old_h * old_w, dim]` embeddings, row-major.
        old_size: `(old_h, old_w)`.
        new_size: `(new_h, new_w)`.

    Returns:
        `[new_h * new_w, dim]` embeddings (numpy, the dtype of `grid`).
    """
    dim = grid.shape[-1]
    image = jnp.asarray(grid, jnp.float32).reshape(*old_size, dim)
    resized = jax.image.resize(image, (*new_size, dim), method="bilinear", antialias=False)
    return np.asarray(resized, grid.dtype).reshape(-1, dim)


def adapt_posemb(
    table: np.ndarray,
    *,
    checkpoint_has_cls: bool,
    num_prefix: int,
    grid: tuple[int, int],
    name: str,
) -> np.ndarray:
    """A checkpoint's `[rows, dim]` position embeddings in the model's convention.

    The model adds one table to `num_prefix` leading tokens (a class token) and the
    `grid` of patch tokens. A checkpoint may hold a row for its class token (Google's
    original ViT, timm, transformers) or not (big_vision adds the embedding before it
    prepends the class token; timm's `no_embed_class`): a missing class row becomes
    zeros, which is the same computation. A grid of another size is resampled with
    `resample_posemb_grid` (a checkpoint's grid, if it is not the model's, must be
    square).

    Arguments:
        table: the checkpoint's embeddings, leading axes of size 1 already removed.
        checkpoint_has_cls: whether the checkpoint has a class token.
        num_prefix: leading tokens of the model (1 with a class token, else 0).
        grid: the model's patch grid `(h, w)`.
        name: the checkpoint key, for error messages.

    Returns:
        `[num_prefix + h * w, dim]` embeddings.
    """
    rows = table.shape[0]
    num_tokens = grid[0] * grid[1]

    def fits(count: int) -> bool:
        return count == num_tokens or math.isqrt(count) ** 2 == count

    candidates = (1, 0) if checkpoint_has_cls else (0,)
    prefix = next((p for p in candidates if rows - p > 0 and fits(rows - p)), None)
    if prefix is None:
        raise ValueError(
            f"Cannot infer the position-embedding grid of checkpoint key {name!r} (shape "
            f"{table.shape}): {rows} rows are neither the model's {grid[0]}x{grid[1]} grid "
            f"nor a square grid{' after a class-token row' if checkpoint_has_cls else ''}."
        )
    head, body = table[:prefix], table[prefix:]
    if prefix < num_prefix:
        head = np.concatenate([np.zeros((num_prefix - prefix, table.shape[1]), table.dtype), head])
    head = head[head.shape[0] - num_prefix :]
    if body.shape[0] != num_tokens:
        side = math.isqrt(body.shape[0])
        body = resample_posemb_grid(body, (side, side), grid)
    return np.concatenate([head, body])
