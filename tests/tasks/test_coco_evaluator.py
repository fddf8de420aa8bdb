"""CocoEvaluator against pycocotools driven the usual way: COCO JSON files on disk."""

import contextlib
import io
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from scenic_eqx.tasks import CocoEvaluator, scored_boxes

SIZE = (48.0, 64.0)  # height, width of every image
NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_100")


def _random_set(rng, num_images, max_boxes=5, queries=8, num_classes=3):
    """Targets and detections in [0, 1] xyxy: jittered copies of the targets, shuffled
    among false positives, with random scores and some wrong labels."""

    def boxes(*shape):
        x0y0 = rng.uniform(0.0, 0.7, size=(*shape, 2))
        return np.concatenate([x0y0, x0y0 + rng.uniform(0.02, 0.3, size=(*shape, 2))], -1)

    target_boxes = boxes(num_images, max_boxes)
    target_labels = rng.integers(0, num_classes, size=(num_images, max_boxes))
    target_mask = (rng.uniform(size=(num_images, max_boxes)) < 0.7).astype(np.float32)
    detected = boxes(num_images, queries)
    labels = rng.integers(0, num_classes, size=(num_images, queries))
    for i in range(num_images):
        slots = rng.permutation(queries)[:max_boxes]
        detected[i, slots] = target_boxes[i] + rng.normal(scale=0.02, size=(max_boxes, 4))
        keep = rng.uniform(size=max_boxes) < 0.8
        labels[i, slots[keep]] = target_labels[i, keep]
    return {
        "boxes": detected.astype(np.float32),
        "scores": rng.uniform(size=(num_images, queries)).astype(np.float32),
        "labels": labels.astype(np.int32),
        "target_boxes": target_boxes.astype(np.float32),
        "target_labels": target_labels.astype(np.int32),
        "target_mask": target_mask,
        "batch_mask": np.ones(num_images, np.float32),
        "image_size": np.tile(np.array(SIZE, np.float32), (num_images, 1)),
    }


def _pycocotools_from_files(data, tmp_path):
    """The stats of pycocotools reading a ground-truth file and a results file."""
    height, width = SIZE
    scale = np.array([width, height, width, height])
    images, annotations, results = [], [], []
    for i in range(len(data["boxes"])):
        images.append({"id": i + 1, "height": height, "width": width})
        for box, label, real in zip(
            data["target_boxes"][i], data["target_labels"][i], data["target_mask"][i]
        ):
            if real:
                x0, y0, x1, y1 = (box * scale).tolist()
                annotations.append({
                    "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label),
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                })  # fmt: skip
        for box, label, score in zip(data["boxes"][i], data["labels"][i], data["scores"][i]):
            x0, y0, x1, y1 = (box * scale).tolist()
            results.append({
                "image_id": i + 1, "category_id": int(label), "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": float(score),
            })  # fmt: skip
    categories = sorted({a["category_id"] for a in annotations} | {r["category_id"] for r in results})
    gt_file, dt_file = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_file.write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": c} for c in categories]}
    ))  # fmt: skip
    dt_file.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(gt_file))
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(str(dt_file)), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats[[0, 1, 2, 3, 4, 5, 8]]
    return {name: math.nan if s < 0 else float(s) for name, s in zip(NAMES, stats)}


def _evaluate_in_batches(data, batch_size, rng):
    """Feeds `data` in batches of `batch_size`, each padded with garbage examples of
    batch_mask 0."""
    evaluator = CocoEvaluator()
    num_images = len(data["boxes"])
    for start in range(0, num_images, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in data.items()}
        padding = {k: rng.uniform(size=(2, *v.shape[1:])).astype(v.dtype) for k, v in batch.items()}
        padding["batch_mask"] = np.zeros(2, np.float32)
        evaluator.update({k: np.concatenate([batch[k], padding[k]]) for k in batch})
    return evaluator.result()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_pycocotools_on_random_detections_at_any_batch_size(seed, tmp_path):
    rng = np.random.default_rng(seed)
    data = _random_set(rng, num_images=23)
    expected = _pycocotools_from_files(data, tmp_path)
    assert 0.05 < expected["AP50"] < 0.95  # neither trivial nor hopeless
    for batch_size in (1, 7, 23):
        results = _evaluate_in_batches(data, batch_size, rng)
        assert set(results) == set(NAMES)
        np.testing.assert_allclose([results[n] for n in NAMES], [expected[n] for n in NAMES], rtol=1e-12)


def _one_image(detections, targets, scores=None, labels=None):
    detections, targets = np.asarray([detections], np.float32), np.asarray([targets], np.float32)
    queries, boxes = detections.shape[1], targets.shape[1]
    return {
        "boxes": detections,
        "scores": np.ones((1, queries), np.float32) if scores is None else np.asarray([scores], np.float32),
        "labels": np.zeros((1, queries), np.int32) if labels is None else np.asarray([labels], np.int32),
        "target_boxes": targets,
        "target_labels": np.zeros((1, boxes), np.int32),
        "target_mask": np.ones((1, boxes), np.float32),
        "batch_mask": np.ones(1, np.float32),
        "image_size": np.array([[100.0, 100.0]], np.float32),
    }


def test_hand_computed_values():
    evaluator = CocoEvaluator()
    # Perfect detections: every AP is 1.
    evaluator.update(_one_image([[0.1, 0.1, 0.5, 0.5], [0.6, 0.2, 0.9, 0.9]],
                                [[0.1, 0.1, 0.5, 0.5], [0.6, 0.2, 0.9, 0.9]]))  # fmt: skip
    results = evaluator.result()
    assert [results[n] for n in ("AP", "AP50", "AP75")] == pytest.approx([1.0] * 3)
    # One box found at IoU 0.625 (0.5 of 0.8 of the area): a true positive at the IoU
    # thresholds 0.50, 0.55 and 0.60 of COCO's ten, so AP = 3/10 and AP75 = 0.
    evaluator = CocoEvaluator()
    evaluator.update(_one_image([[0.0, 0.0, 0.5, 0.8]], [[0.0, 0.0, 0.8, 0.8]]))
    results = evaluator.result()
    assert results["AP50"] == pytest.approx(1.0) and results["AP75"] == 0.0
    assert results["AP"] == pytest.approx(0.3)
    # The right box with the wrong class finds nothing.
    evaluator = CocoEvaluator()
    evaluator.update(_one_image([[0.1, 0.1, 0.5, 0.5]], [[0.1, 0.1, 0.5, 0.5]], labels=[1]))
    assert evaluator.result()["AP"] == 0.0


def test_padding_only_and_bad_inputs_are_reported():
    evaluator = CocoEvaluator()
    data = _one_image([[0.1, 0.1, 0.5, 0.5]], [[0.1, 0.1, 0.5, 0.5]])
    evaluator.update({**data, "batch_mask": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluator.result()
    with pytest.raises(ValueError, match="scores"):
        evaluator.update({k: v for k, v in data.items() if k != "scores"})
    with pytest.raises(ValueError, match="`max_detections`"):
        CocoEvaluator(max_detections=0)


def _two_objects_two_queries(scoring, max_detections=100):
    """One 48x64 image with an object of class 0 and one of class 1, each found by one
    query; the first query rates class 1 (0.5) above its true class 0 (0.4)."""
    probs = np.array([[[0.4, 0.5, 0.1], [0.05, 0.9, 0.05]]], np.float32)  # last: "no object"
    targets = np.array([[[0.1, 0.1, 0.4, 0.4], [0.6, 0.6, 0.9, 0.9]]], np.float32)
    # The same boxes as (cx, cy, w, h), as the model predicts them.
    predicted = np.array([[[0.25, 0.25, 0.3, 0.3], [0.75, 0.75, 0.3, 0.3]]], np.float32)
    scored = scored_boxes(
        jnp.log(jnp.asarray(probs)), jnp.asarray(predicted), scoring=scoring, max_detections=max_detections
    )
    return {
        **{name: np.asarray(value) for name, value in scored.items()},
        "target_boxes": targets,
        "target_labels": np.array([[0, 1]], np.int32),
        "target_mask": np.ones((1, 2), np.float32),
        "batch_mask": np.ones(1, np.float32),
        "image_size": np.array([SIZE], np.float32),
    }


@pytest.mark.parametrize(
    "scoring, max_detections, expected_ap",
    [
        # Detections (box, class, score): (B, 1, .9), (A, 1, .5). Class 1: a true positive,
        # then a false positive, AP 1; class 0 is never detected, AP 0: the mean is 0.5.
        ("top_class", 100, 0.5),
        # Adds (A, 0, .4) and (B, 0, .05): class 0 now has its true positive first, AP 1.
        ("every_class", 100, 1.0),
        # Only the two best of the four pairs: the top-class detections again.
        ("every_class", 2, 0.5),
    ],
)
def test_every_class_scoring_finds_a_runner_up_class(scoring, max_detections, expected_ap, tmp_path):
    data = _two_objects_two_queries(scoring, max_detections)
    assert data["scores"].shape == (1, 2 if scoring == "top_class" else min(max_detections, 4))
    evaluator = CocoEvaluator()
    evaluator.update(data)
    results = evaluator.result()
    assert results["AP"] == pytest.approx(expected_ap)
    expected = _pycocotools_from_files(data, tmp_path)
    np.testing.assert_allclose([results[n] for n in NAMES], [expected[n] for n in NAMES], rtol=1e-12)


def test_keeps_the_best_detections_of_each_image(tmp_path):
    # Three detections of one object, the true one scored lowest: with room for two,
    # only the two false positives are kept and AP is 0. (pycocotools' own summary
    # reports AP at 100 detections only, NaN at any other `maxDets`.)
    data = _one_image(
        [[0.6, 0.6, 0.9, 0.9], [0.0, 0.0, 0.2, 0.2], [0.1, 0.1, 0.5, 0.5]],
        [[0.1, 0.1, 0.5, 0.5]],
        scores=[0.9, 0.8, 0.7],
    )
    evaluator = CocoEvaluator(max_detections=2)
    evaluator.update(data)
    assert evaluator.result()["AP"] == 0.0
    evaluator = CocoEvaluator(max_detections=3)
    evaluator.update(data)
    assert evaluator.result()["AP"] == pytest.approx(1 / 3)  # precision 1/3 at recall 1
