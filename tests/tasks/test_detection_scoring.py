"""`scored_boxes` scoring modes: DETR's top class per query and Scenic's every class of
every query (top `max_detections` per image), literal values and a numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.tasks import DetectionTask, scored_boxes

# Two queries, two object classes and "no object" (last).
PROBS = np.array([[[0.1, 0.6, 0.3], [0.25, 0.05, 0.7]]], np.float32)
BOXES = np.array([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.5]]], np.float32)  # cx, cy, w, h
XYXY = np.array([[[0.4, 0.3, 0.6, 0.7], [0.0, 0.5, 0.5, 1.0]]], np.float32)


def test_every_class_literal():
    out = scored_boxes(jnp.log(PROBS), jnp.asarray(BOXES), scoring="every_class")
    # The four (query, class) pairs, best first: (0, 1) .6, (1, 0) .25, (0, 0) .1, (1, 1) .05.
    np.testing.assert_allclose(out["scores"], [[0.6, 0.25, 0.1, 0.05]], rtol=1e-6)
    np.testing.assert_array_equal(out["labels"], [[1, 0, 0, 1]])
    np.testing.assert_allclose(out["boxes"], XYXY[:, [0, 1, 0, 1]], atol=1e-7)
    top_two = scored_boxes(jnp.log(PROBS), jnp.asarray(BOXES), scoring="every_class", max_detections=2)
    np.testing.assert_array_equal(top_two["labels"], [[1, 0]])
    np.testing.assert_allclose(top_two["boxes"], XYXY, atol=1e-7)


def test_top_class_literal():
    out = scored_boxes(jnp.log(PROBS), jnp.asarray(BOXES), scoring="top_class", max_detections=1)
    # One detection per query whatever `max_detections`, as DETR scores them.
    np.testing.assert_allclose(out["scores"], [[0.6, 0.25]], rtol=1e-6)
    np.testing.assert_array_equal(out["labels"], [[1, 0]])


def _scenic_every_class(probs, boxes, max_detections):
    """Scenic's Deformable DETR evaluator, image by image in numpy: the `max_detections`
    best of the flattened [queries * classes] probabilities."""
    out = []
    for image_probs, image_boxes in zip(probs, boxes):
        best = np.argsort(image_probs.reshape(-1))[::-1][:max_detections]
        queries, classes = np.divmod(best, image_probs.shape[1])
        out.append((image_probs[queries, classes], classes, image_boxes[queries]))
    return out


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_every_class_matches_the_numpy_reference_under_jit(activation):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(3, 30, 7))  # 30 queries x 6 classes: 180 pairs an image
    boxes = rng.uniform(0.1, 0.5, size=(3, 30, 4))
    score = jax.jit(lambda l, b: scored_boxes(l, b, activation=activation, scoring="every_class"))
    out = {
        k: np.asarray(v)
        for k, v in score(jnp.asarray(logits, jnp.float32), jnp.asarray(boxes, jnp.float32)).items()
    }
    assert out["scores"].shape == (3, 100) and out["boxes"].shape == (3, 100, 4)
    if activation == "softmax":  # over all classes, "no object" included
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs = (probs / probs.sum(-1, keepdims=True))[..., :-1]
    else:  # each object class on its own
        probs = 1 / (1 + np.exp(-logits[..., :-1]))
    corners = np.asarray(
        scored_boxes(jnp.asarray(logits, jnp.float32), jnp.asarray(boxes, jnp.float32))["boxes"]
    )
    for i, (scores, classes, image_boxes) in enumerate(_scenic_every_class(probs, corners, 100)):
        np.testing.assert_allclose(out["scores"][i], scores, rtol=1e-5)
        np.testing.assert_array_equal(out["labels"][i], classes)
        np.testing.assert_array_equal(out["boxes"][i], image_boxes)


def test_the_task_scores_for_coco_as_configured():
    rng = np.random.default_rng(1)
    outputs = {
        "pred_logits": jnp.asarray(rng.normal(size=(2, 40, 4)), jnp.float32),  # 120 pairs an image
        "pred_boxes": jnp.asarray(rng.uniform(0.2, 0.4, size=(2, 40, 4)), jnp.float32),
    }
    label = {
        "boxes": jnp.full((2, 3, 4), 0.3),
        "labels": jnp.zeros((2, 3), jnp.int32),
        "box_mask": jnp.ones((2, 3)),
    }
    batch = {"inputs": jnp.zeros((2, 8, 8, 3)), "label": label}
    for scoring, detections in (("top_class", 40), ("every_class", 100)):
        inputs = DetectionTask(coco_scoring=scoring).evaluator_inputs(outputs, batch)
        assert inputs["boxes"].shape == (2, detections, 4)
        assert inputs["scores"].shape == inputs["labels"].shape == (2, detections)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scoring="all"), r"`scoring` must be one of 'top_class', 'every_class'\. Received: 'all'\."),
        (
            dict(scoring="every_class", max_detections=0),
            r"`max_detections` must be a positive integer\. Received: 0\.",
        ),
    ],
)
def test_bad_scoring_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        scored_boxes(jnp.log(PROBS), jnp.asarray(BOXES), **kwargs)


def test_bad_task_scoring_is_named():
    with pytest.raises(
        ValueError, match=r"`coco_scoring` must be one of 'top_class', 'every_class'\. Received: 'top'\."
    ):
        DetectionTask(coco_scoring="top")
