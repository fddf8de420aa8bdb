"""The soft Dice loss: one minus the Dice overlap (F1 score) of a soft mask and its target."""

import math

from jaxtyping import Array, Float, Real


def dice_loss(
    probabilities: Float[Array, "*batch points"],
    targets: Real[Array, "*batch points"],
    *,
    weights: Float[Array, "*batch points"] | None = None,
    smooth: float | int = 1.0,
) -> Float[Array, " *batch"]:
    """The soft Dice loss of every mask, over its last axis (the pixels, flattened).

    `1 - (2 sum(w p t) + smooth) / (sum(w p) + sum(w t) + smooth)`: one minus the Dice
    coefficient of the predicted probabilities `p` and the targets `t`, each point
    weighted by `w` (all ones by default). `smooth` keeps an empty mask against an empty
    target at a loss of 0 and the gradient finite. The sums are plain, as in DETR's
    panoptic head and Scenic; V-Net's original form squares `p` and `t` in the
    denominator. `optax.losses.dice_loss` computes the unweighted loss from logits (its
    `smooth` is half this one); this form takes probabilities, so that the caller
    chooses sigmoid (masks) or softmax (classes), and point weights (padding, ignored
    pixels).

    References: Milletari et al., "V-Net: Fully Convolutional Neural Networks for
    Volumetric Medical Image Segmentation", 3DV 2016, https://arxiv.org/abs/1606.04797,
    Eq. (1); Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020
    (DETR), https://arxiv.org/abs/2005.12872, Section 4.4.

    Arguments:
        probabilities: predicted probabilities in [0, 1], `[..., points]` (e.g. a
            sigmoid mask `[num_masks, height * width]`, or a softmax class map moved to
            `[num_classes, height * width]`).
        targets: binary (or soft) targets in [0, 1], the shape of `probabilities`.
        weights: optional non-negative weights of the points, the same shape; a point
            of weight 0 counts nowhere.
        smooth: added to the numerator and the denominator, > 0.

    Returns:
        The loss of every mask `[...]`, in [0, 1] for probabilities and targets in [0, 1].
    """
    if isinstance(smooth, bool) or not math.isfinite(smooth) or smooth <= 0:
        raise ValueError(f"`smooth` must be a finite number > 0. Received: {smooth!r}.")
    for name, array in (("targets", targets), ("weights", weights)):
        if array is not None and array.shape != probabilities.shape:
            raise ValueError(
                f"`{name}` must have the shape of `probabilities`, {tuple(probabilities.shape)}. "
                f"Received: shape {tuple(array.shape)}."
            )
    targets = targets.astype(probabilities.dtype)
    if weights is not None:
        probabilities, targets = probabilities * weights, targets * weights
    overlap = (probabilities * targets).sum(-1)
    total = probabilities.sum(-1) + targets.sum(-1)
    return 1.0 - (2.0 * overlap + smooth) / (total + smooth)
