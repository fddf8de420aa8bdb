"""L1 losses: the absolute error of every element, and of every box's four coordinates."""

import jax.numpy as jnp
from jaxtyping import Array, Float


def l1_loss(predictions: Float[Array, "*shape"], targets: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """The absolute error `|prediction - target|` of every element.

    Arguments:
        predictions: any shape.
        targets: the shape of `predictions`; no broadcasting.

    Returns:
        The elementwise loss, the shape of `predictions`.
    """
    if targets.shape != predictions.shape:
        raise ValueError(
            f"`targets` must have the shape of `predictions`, {tuple(predictions.shape)}: no "
            f"broadcasting between targets and predictions. Received: shape {tuple(targets.shape)}."
        )
    return jnp.abs(predictions - targets)


def box_l1_loss(
    predicted_boxes: Float[Array, "*#batch 4"],
    target_boxes: Float[Array, "*#batch 4"],
    *,
    tight: bool = True,
) -> Float[Array, "..."]:
    """The L1 distance between boxes: the absolute errors of the 4 coordinates, summed.

    DETR's box regression loss and matching cost (with `(cx, cy, w, h)` boxes
    normalised to the image; Carion et al., "End-to-End Object Detection with
    Transformers", ECCV 2020, https://arxiv.org/abs/2005.12872, Section 3.1). The leading
    axes broadcast: `[n, 1, 4]` against `[1, m, 4]` gives the pairwise `[n, m]` costs.

    With `tight=False` (`(x0, y0, x1, y1)` boxes only) the loss is loose, as Scenic's:
    an edge of the predicted box costs only where it lies outside the target box (its
    `x0, y0` below the target's, its `x1, y1` above), so a prediction inside its target
    costs 0.

    Arguments:
        predicted_boxes: `[..., 4]`.
        target_boxes: `[..., 4]`, in the same format, broadcasting against
            `predicted_boxes`.
        tight: the plain L1 distance (True) or the loose one (False).

    Returns:
        The loss of every box (pair) `[...]`, the broadcast leading shape.
    """
    difference = predicted_boxes - target_boxes
    if not tight:
        # Corners outside the target: the top-left one below it, the bottom-right above.
        difference = jnp.concatenate(
            [jnp.minimum(difference[..., :2], 0.0), jnp.maximum(difference[..., 2:], 0.0)], axis=-1
        )
    return jnp.sum(jnp.abs(difference), axis=-1)
