import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from scenic_eqx.tasks import (
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
)

# Eager dispatch compiles every primitive anew for each shape; one jitted function per
# operation keeps the suite fast (and jit == eager is exercised by the literal tests).
_iou = jax.jit(box_iou)
_giou = jax.jit(generalized_box_iou)
_to_xyxy = jax.jit(box_cxcywh_to_xyxy)
_to_cxcywh = jax.jit(box_xyxy_to_cxcywh)


@jax.jit
def _loss_grads(boxes1, boxes2):
    def loss(b1, b2):
        return jnp.sum(generalized_box_iou(b1, b2)) + jnp.sum(box_iou(b1, b2)[0])

    return generalized_box_iou(boxes1, boxes2), jax.grad(loss, argnums=(0, 1))(boxes1, boxes2)


def _numpy_iou_giou(boxes1, boxes2):
    """Loop-per-pair reference, in float64, straight from the definitions."""
    iou = np.zeros((len(boxes1), len(boxes2)))
    giou = np.zeros_like(iou)
    for i, (a0, b0, a1, b1) in enumerate(boxes1.astype(np.float64)):
        for j, (c0, d0, c1, d1) in enumerate(boxes2.astype(np.float64)):
            inter = max(0.0, min(a1, c1) - max(a0, c0)) * max(0.0, min(b1, d1) - max(b0, d0))
            union = (a1 - a0) * (b1 - b0) + (c1 - c0) * (d1 - d0) - inter
            hull = (max(a1, c1) - min(a0, c0)) * (max(b1, d1) - min(b0, d0))
            iou[i, j] = inter / union
            giou[i, j] = iou[i, j] - (hull - union) / hull
    return iou, giou


def _random_xyxy(rng, num):
    corners = rng.uniform(0.0, 1.0, size=(num, 2, 2))
    # Sorting each coordinate pair makes valid boxes with x0 <= x1, y0 <= y1.
    low, high = np.sort(corners, axis=1).transpose(1, 0, 2)
    return np.concatenate([low, high], axis=-1).astype(np.float32)


def test_iou_and_giou_match_numpy_reference():
    rng = np.random.default_rng(0)
    boxes1, boxes2 = _random_xyxy(rng, 300), _random_xyxy(rng, 40)
    iou, union = _iou(jnp.asarray(boxes1), jnp.asarray(boxes2))
    giou = _giou(jnp.asarray(boxes1), jnp.asarray(boxes2))
    iou_ref, giou_ref = _numpy_iou_giou(boxes1, boxes2)
    assert iou.shape == union.shape == giou.shape == (300, 40)
    # Random boxes overlap partly, not at all, or nest: all three cases are covered.
    assert (iou_ref == 0).any() and (iou_ref > 0.3).any() and (giou_ref < -0.3).any()
    np.testing.assert_allclose(iou, iou_ref, atol=1e-5)
    np.testing.assert_allclose(giou, giou_ref, atol=1e-5)
    area1 = np.prod(boxes1[:, 2:] - boxes1[:, :2], axis=-1)
    area2 = np.prod(boxes2[:, 2:] - boxes2[:, :2], axis=-1)
    # union = area1 + area2 - intersection, and intersection = iou * union.
    np.testing.assert_allclose(union * (1 + iou), area1[:, None] + area2[None, :], rtol=1e-5, atol=1e-6)


def test_hand_computed_values():
    unit = jnp.array([[0.0, 0.0, 1.0, 1.0]])
    # Overlapping [0,2]x[0,2] and [1,3]x[1,3]: intersection 1, union 7, hull 9.
    a = jnp.array([[0.0, 0.0, 2.0, 2.0]])
    b = jnp.array([[1.0, 1.0, 3.0, 3.0]])
    # Disjoint [0,1]x[0,1] and [2,3]x[0,1]: intersection 0, union 2, hull 3x1.
    far = jnp.array([[2.0, 0.0, 3.0, 1.0]])

    iou, union = _iou(unit, unit)
    np.testing.assert_allclose(iou, [[1.0]])
    np.testing.assert_allclose(union, [[1.0]])
    np.testing.assert_allclose(_giou(unit, unit), [[1.0]])

    iou, union = _iou(a, b)
    np.testing.assert_allclose(iou, [[1 / 7]], rtol=1e-6)
    np.testing.assert_allclose(union, [[7.0]])
    np.testing.assert_allclose(_giou(a, b), [[1 / 7 - 2 / 9]], rtol=1e-6)

    np.testing.assert_allclose(_iou(unit, far)[0], [[0.0]])
    np.testing.assert_allclose(_giou(unit, far), [[-1 / 3]], rtol=1e-6)
    # jit == eager.
    np.testing.assert_allclose(generalized_box_iou(unit, far), [[-1 / 3]], rtol=1e-6)


def test_leading_batch_dimensions():
    rng = np.random.default_rng(1)
    boxes1 = jnp.asarray(_random_xyxy(rng, 2 * 3 * 5).reshape(2, 3, 5, 4))
    boxes2 = jnp.asarray(_random_xyxy(rng, 2 * 3 * 4).reshape(2, 3, 4, 4))
    giou = _giou(boxes1, boxes2)
    assert giou.shape == (2, 3, 5, 4)
    iou_ref, giou_ref = _numpy_iou_giou(np.asarray(boxes1[1, 2]), np.asarray(boxes2[1, 2]))
    np.testing.assert_allclose(giou[1, 2], giou_ref, atol=1e-5)
    np.testing.assert_allclose(_iou(boxes1, boxes2)[0][1, 2], iou_ref, atol=1e-5)


def test_conversions_round_trip_and_literal():
    np.testing.assert_allclose(
        box_cxcywh_to_xyxy(jnp.array([0.5, 0.4, 0.2, 0.6])), [0.4, 0.1, 0.6, 0.7], rtol=1e-6
    )
    np.testing.assert_allclose(
        box_xyxy_to_cxcywh(jnp.array([0.4, 0.1, 0.6, 0.7])), [0.5, 0.4, 0.2, 0.6], rtol=1e-6
    )
    rng = np.random.default_rng(2)
    xyxy = jnp.asarray(_random_xyxy(rng, 24).reshape(2, 3, 4, 4))
    cxcywh = _to_cxcywh(xyxy)
    assert cxcywh.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(_to_xyxy(cxcywh), xyxy, atol=1e-6)
    np.testing.assert_allclose(_to_cxcywh(_to_xyxy(cxcywh)), cxcywh, atol=1e-6)


@pytest.mark.parametrize(
    "boxes1, boxes2",
    [
        # Zero-area boxes: a point, a point on itself, a segment and a box around it.
        ([[0.5, 0.5, 0.5, 0.5]], [[0.5, 0.5, 0.5, 0.5]]),
        ([[0.2, 0.2, 0.2, 0.2]], [[0.6, 0.6, 0.6, 0.6]]),
        ([[0.1, 0.3, 0.9, 0.3]], [[0.0, 0.0, 1.0, 1.0]]),
        # Ordinary overlapping and touching boxes.
        ([[0.0, 0.0, 2.0, 2.0]], [[1.0, 1.0, 3.0, 3.0]]),
        ([[0.0, 0.0, 1.0, 1.0]], [[1.0, 0.0, 2.0, 1.0]]),
    ],
)
def test_gradients_are_finite_even_for_degenerate_boxes(boxes1, boxes2):
    values, grads = _loss_grads(jnp.array(boxes1), jnp.array(boxes2))
    assert np.isfinite(values).all()
    assert all(np.isfinite(g).all() for g in grads)


def test_conversion_gradient_is_finite_for_a_zero_size_box():
    @jax.jit
    @jax.grad
    def grad_fn(cxcywh):
        boxes = box_cxcywh_to_xyxy(cxcywh)
        return jnp.sum(generalized_box_iou(boxes, boxes))

    grad = grad_fn(jnp.array([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.2, 0.1]]))
    assert np.isfinite(grad).all()


def test_giou_gradient_pulls_disjoint_boxes_together():
    # IoU is flat at 0 for disjoint boxes. With [x0,0,x1,1] left of [2,0,3,1],
    # GIoU = -(2 - x1) / (3 - x0): d/dx0 = -1/9 and d/dx1 = 1/3 at x0=0, x1=1, so moving
    # the box right (towards the other) raises GIoU by 2/9 per unit.
    _, (grad, _) = _loss_grads(jnp.array([[0.0, 0.0, 1.0, 1.0]]), jnp.array([[2.0, 0.0, 3.0, 1.0]]))
    # `_loss_grads` adds the IoU, whose gradient is 0 here.
    np.testing.assert_allclose(grad[0, ::2], [-1 / 9, 1 / 3], rtol=1e-5)


def test_wrong_last_axis_is_a_jaxtyping_error():
    with pytest.raises(jaxtyping.TypeCheckError, match="batch n 4"):
        box_iou(jnp.zeros((3, 5)), jnp.zeros((3, 4)))


@pytest.mark.parametrize(
    "box",
    [[0.5, 0.5, 0.5, 0.5], [0.1, 0.3, 0.9, 0.3], [0.2, 0.2, 0.2 + 1e-5, 0.2 + 1e-5]],
    ids=["point", "segment", "tiny box"],
)
def test_identical_boxes_have_iou_and_giou_one_whatever_their_area(box):
    # The limit of I / U for two identical boxes shrinking to nothing is 1; the
    # enclosing box is the union, so the GIoU penalty is 0. (It used to be -1, the
    # worst value: DETR's loss 1 - GIoU was 2 for a perfect degenerate prediction.)
    boxes = jnp.array([box])
    values, grads = _loss_grads(boxes, boxes)
    np.testing.assert_array_equal(values, [[1.0]])
    np.testing.assert_array_equal(_iou(boxes, boxes)[0], [[1.0]])
    assert all(np.isfinite(g).all() for g in grads)


def test_degenerate_pairs_that_differ_keep_their_limits():
    point, other_point = jnp.array([[0.2, 0.2, 0.2, 0.2]]), jnp.array([[0.6, 0.6, 0.6, 0.6]])
    # Disjoint points: IoU 0, and their enclosing box is all penalty.
    np.testing.assert_allclose(_giou(point, other_point), [[-1.0]])
    # A point inside a box: no overlapping area (IoU 0), enclosing box = union (GIoU 0).
    np.testing.assert_allclose(_giou(point, jnp.array([[0.0, 0.0, 1.0, 1.0]])), [[0.0]], atol=1e-6)
