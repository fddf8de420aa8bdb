"""Bounding-box conversions, pairwise IoU and generalized IoU (differentiable)."""

import jax.numpy as jnp
from jaxtyping import Array, Float

# Floor on the union and enclosing areas: degenerate (zero-area) boxes give finite IoUs
# and gradients instead of 0/0. It is small enough to leave real boxes untouched (a box
# of 1e-3 x 1e-3 in normalized coordinates still has area 1e-6 > 1e-7), and large
# enough that the derivative of `x / eps` stays far from float32 overflow.
_AREA_EPS = 1e-7


def box_cxcywh_to_xyxy(boxes: Float[Array, "*batch 4"]) -> Float[Array, "*batch 4"]:
    """Converts boxes from (center x, center y, width, height) to (x0, y0, x1, y1).

    Arguments:
        boxes: `[..., 4]` boxes as `(cx, cy, w, h)`, any leading dimensions.

    Returns:
        `[..., 4]` boxes as `(x0, y0, x1, y1)` (corners), same leading dimensions.
    """
    cx, cy, w, h = jnp.moveaxis(boxes, -1, 0)
    return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def box_xyxy_to_cxcywh(boxes: Float[Array, "*batch 4"]) -> Float[Array, "*batch 4"]:
    """Converts boxes from (x0, y0, x1, y1) to (center x, center y, width, height).

    Arguments:
        boxes: `[..., 4]` boxes as `(x0, y0, x1, y1)`, any leading dimensions.

    Returns:
        `[..., 4]` boxes as `(cx, cy, w, h)`, same leading dimensions.
    """
    x0, y0, x1, y1 = jnp.moveaxis(boxes, -1, 0)
    return jnp.stack([0.5 * (x0 + x1), 0.5 * (y0 + y1), x1 - x0, y1 - y0], axis=-1)


def _area(boxes: Float[Array, "*batch 4"]) -> Float[Array, "*batch"]:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(
    boxes1: Float[Array, "*batch n 4"], boxes2: Float[Array, "*batch m 4"]
) -> tuple[Float[Array, "*batch n m"], Float[Array, "*batch n m"]]:
    """Pairwise intersection over union of two sets of `(x0, y0, x1, y1)` boxes.

    Boxes must satisfy `x0 <= x1` and `y0 <= y1`. The union is floored at 1e-7 before
    dividing, so zero-area boxes give finite values and gradients. Identical boxes have
    IoU 1 whatever their area, zero included: the limit of `I / U` as two identical
    boxes shrink is 1 (`I = U`). Other pairs whose union has no area (distinct points
    or segments) have IoU 0.

    Arguments:
        boxes1: `[..., n, 4]` boxes.
        boxes2: `[..., m, 4]` boxes, with the same leading dimensions as `boxes1`.

    Returns:
        A pair `(iou, union)`, each `[..., n, m]`: `iou[..., i, j]` is the IoU of
        `boxes1[..., i]` and `boxes2[..., j]`, `union` the area of their union (as
        needed by `generalized_box_iou`).
    """
    area1 = _area(boxes1)[..., :, None]
    area2 = _area(boxes2)[..., None, :]
    top_left = jnp.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = jnp.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    # Disjoint boxes have a negative overlap along some axis: clip it to no intersection.
    size = jnp.clip(bottom_right - top_left, min=0.0)
    intersection = size[..., 0] * size[..., 1]
    union = area1 + area2 - intersection
    iou = intersection / jnp.maximum(union, _AREA_EPS)
    # Only degenerate identical pairs change: for boxes with area the ratio is 1 already.
    identical = jnp.all(boxes1[..., :, None, :] == boxes2[..., None, :, :], axis=-1)
    return jnp.where(identical, jnp.ones_like(iou), iou), union


def generalized_box_iou(
    boxes1: Float[Array, "*batch n 4"], boxes2: Float[Array, "*batch m 4"]
) -> Float[Array, "*batch n m"]:
    """Pairwise generalized IoU of two sets of `(x0, y0, x1, y1)` boxes.

    `GIoU = IoU - (C - U) / C`, where `U` is the area of the union and `C` that of the
    smallest box enclosing both (Rezatofighi et al. 2019, "Generalized Intersection over
    Union"). It lies in `[-1, 1]`, is 1 for identical boxes and keeps decreasing as
    disjoint boxes move apart, so it gives a gradient where IoU is flat at 0 (the DETR
    box loss, Carion et al. 2020). Areas are floored at 1e-7 before dividing, so
    degenerate boxes give finite values and gradients. Identical boxes have GIoU 1
    whatever their area, zero included (IoU 1, and the enclosing box is the union): the
    limit as two identical boxes shrink to a point, and DETR's loss `1 - GIoU` is 0 for
    a prediction equal to a degenerate target. When the enclosing box has no area the
    penalty `(C - U) / C` is taken as 0, its limit for pairs of nested boxes.

    Arguments:
        boxes1: `[..., n, 4]` boxes with `x0 <= x1` and `y0 <= y1`.
        boxes2: `[..., m, 4]` boxes, with the same leading dimensions as `boxes1`.

    Returns:
        `[..., n, m]`: the GIoU of `boxes1[..., i]` and `boxes2[..., j]`.
    """
    iou, union = box_iou(boxes1, boxes2)
    top_left = jnp.minimum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = jnp.maximum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    size = jnp.clip(bottom_right - top_left, min=0.0)
    enclosing = size[..., 0] * size[..., 1]
    # Only the divisor is floored: flooring `C` in the numerator too would make the
    # penalty 1 (the worst) for two identical zero-area boxes, where `C = U = 0`.
    return iou - (enclosing - union) / jnp.maximum(enclosing, _AREA_EPS)
