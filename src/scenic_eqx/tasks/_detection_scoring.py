"""How a set predictor's class probabilities become scored detections for COCO AP.

Two protocols are in use for DETR-style models (Carion et al. 2020):

- `"top_class"`: each query is one detection, labelled with its most probable object
  class and scored by that probability (DETR's `PostProcess`, Scenic's DETR).
- `"every_class"`: each query is one detection per object class, scored by that
  class's probability, and the `max_detections` best of all `queries * classes` of an
  image are kept (Deformable DETR, Zhu et al. 2021, and Scenic's Deformable DETR
  evaluator, which reports about 0.5 AP more than with the top class). A query whose
  two best classes are close then scores as both.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

SCORINGS = ("top_class", "every_class")

COCO_MAX_DETECTIONS = 100
"""Detections kept per image: COCO's rule for results (https://cocodataset.org/#format-results)."""


def check_scoring(scoring: str, max_detections: int) -> None:
    """Raises unless `scoring` is one of `SCORINGS` and `max_detections` a positive integer."""
    if scoring not in SCORINGS:
        raise ValueError(f"`scoring` must be one of {', '.join(map(repr, SCORINGS))}. Received: {scoring!r}.")
    if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1:
        raise ValueError(f"`max_detections` must be a positive integer. Received: {max_detections!r}.")


def select_detections(
    probs: Float[Array, "*batch queries classes"],
    boxes: Float[Array, "*batch queries 4"],
    *,
    scoring: str = "top_class",
    max_detections: int = COCO_MAX_DETECTIONS,
) -> dict[str, Array]:
    """The detections of each image under `scoring` (see the module docstring).

    Arguments:
        probs: each query's probability of each object class ("no object" left out).
        boxes: each query's box, in any layout (it is gathered, not changed).
        scoring: `"top_class"` or `"every_class"`.
        max_detections: with `"every_class"`, the detections kept per image.

    Returns:
        `{"boxes": [..., detections, 4], "scores": [..., detections], "labels": int32
        [..., detections]}`, where `detections` is `queries` for `"top_class"`, and
        `min(max_detections, queries * classes)`, best first, for `"every_class"`.
    """
    check_scoring(scoring, max_detections)
    if scoring == "top_class":
        return {
            "boxes": boxes,
            "scores": jnp.max(probs, axis=-1),
            "labels": jnp.argmax(probs, axis=-1).astype(jnp.int32),
        }
    num_classes = probs.shape[-1]
    flat = probs.reshape(*probs.shape[:-2], -1)  # entry `query * num_classes + class`
    scores, index = jax.lax.top_k(flat, min(max_detections, flat.shape[-1]))
    query = index // num_classes
    return {
        "boxes": jnp.take_along_axis(boxes, query[..., None], axis=-2),
        "scores": scores,
        "labels": (index % num_classes).astype(jnp.int32),
    }
