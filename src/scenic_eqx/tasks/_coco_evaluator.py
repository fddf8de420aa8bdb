"""COCO average precision with pycocotools, the reference implementation.

Reference: Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014; the
metrics are those of https://cocodataset.org/#detection-eval.
"""

import contextlib
import io
import math

import numpy as np

from .._extras import require
from ._detection_scoring import COCO_MAX_DETECTIONS
from ._evaluator import Evaluator

# COCOeval.stats indices of the box metrics reported (the rest are recalls).
_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "AP_small": 3, "AP_medium": 4, "AP_large": 5, "AR_100": 8}


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """`(x0, y0, x1, y1)` boxes as COCO's `(x, y, width, height)`."""
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


class CocoEvaluator(Evaluator):
    """COCO box AP, AP50, AP75, AP by object size and AR@100, from `pycocotools.COCOeval`.

    `update` takes batches of scored boxes and targets (`DetectionTask.evaluator_inputs`):

        boxes          [batch, detections, 4] predicted (x0, y0, x1, y1) in [0, 1]
        scores         [batch, detections]
        labels         [batch, detections]   predicted class index
        target_boxes   [batch, max_boxes, 4] (x0, y0, x1, y1) in [0, 1]
        target_labels  [batch, max_boxes]
        target_mask    [batch, max_boxes]    1 for a real box
        batch_mask     [batch]               0 for a padding example, which is skipped
        image_size     [batch, 2]            height and width the boxes are scaled to

    Every real example becomes one COCO image; boxes are scaled to its pixel size (so
    COCO's small/medium/large areas apply in pixels). Its `max_detections` best-scored
    detections are kept, as COCO's rules for results ask (pycocotools itself caps
    each image and class separately). The detections are one per query with the
    top-class scoring of DETR, or the best (query, class) pairs with Scenic's
    every-class scoring (`scored_boxes(..., scoring=...)`, `DetectionTask(coco_scoring=...)`);
    the evaluator is the same for both. A class is any integer label.
    `result` builds the ground truth and the detections in memory and runs pycocotools'
    `evaluate`, `accumulate` and `summarize`; a metric that pycocotools cannot compute
    (no ground-truth box of that size) is NaN.

    Arguments:
        max_detections: detections kept per image (COCO's 100).
    """

    def __init__(self, max_detections: int = COCO_MAX_DETECTIONS):
        if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1:
            raise ValueError(f"`max_detections` (={max_detections!r}) must be a positive integer")
        # Checked here, not after a whole evaluation pass in `result`.
        require("pycocotools", "coco", "COCO AP (scenic_eqx.tasks.CocoEvaluator)")
        self.max_detections = max_detections
        self._images: list[dict] = []
        self._targets: list[np.ndarray] = []  # rows: image_id, x, y, w, h, class
        self._detections: list[np.ndarray] = []  # rows: image_id, x, y, w, h, score, class

    def update(self, inputs: dict[str, np.ndarray]) -> None:
        """Adds the real examples of one batch; see the class docstring for the arrays."""
        required = (
            "boxes",
            "scores",
            "labels",
            "target_boxes",
            "target_labels",
            "target_mask",
            "batch_mask",
            "image_size",
        )
        missing = [name for name in required if name not in inputs]
        if missing:
            raise ValueError(f"`inputs` lacks {missing}; it needs {list(required)}")
        arrays = {name: np.asarray(inputs[name]) for name in required}
        for i in np.flatnonzero(arrays["batch_mask"] > 0):
            image_id = len(self._images) + 1
            height, width = (float(v) for v in arrays["image_size"][i])
            self._images.append({"id": image_id, "height": height, "width": width})
            scale = np.array([width, height, width, height])
            real = arrays["target_mask"][i] > 0
            targets = _xywh(arrays["target_boxes"][i][real] * scale)
            self._targets.append(
                np.column_stack(
                    [
                        np.full(len(targets), image_id),
                        targets,
                        arrays["target_labels"][i][real],
                    ]
                )
            )
            best = np.argsort(-arrays["scores"][i], kind="stable")[: self.max_detections]
            detections = _xywh(arrays["boxes"][i][best] * scale)
            self._detections.append(
                np.column_stack(
                    [
                        np.full(len(detections), image_id),
                        detections,
                        arrays["scores"][i][best],
                        arrays["labels"][i][best],
                    ]
                )
            )

    def result(self) -> dict[str, float]:
        """`AP`, `AP50`, `AP75`, `AP_small`, `AP_medium`, `AP_large` and `AR_100`."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if not self._images:
            raise ValueError("No example was added: there is nothing to evaluate.")
        targets = np.concatenate(self._targets).reshape(-1, 6)
        detections = np.concatenate(self._detections).reshape(-1, 7)
        classes = np.union1d(targets[:, 5], detections[:, 6]).astype(int)
        ground_truth = COCO()
        ground_truth.dataset = {
            "images": self._images,
            "categories": [{"id": int(c)} for c in classes],
            "annotations": [
                {
                    "id": k + 1,  # COCOeval treats id 0 as "unmatched".
                    "image_id": int(row[0]),
                    "bbox": [float(v) for v in row[1:5]],
                    "area": float(row[3] * row[4]),
                    "category_id": int(row[5]),
                    "iscrowd": 0,
                }
                for k, row in enumerate(targets)
            ],
        }
        # pycocotools prints its progress and its table; the caller logs the numbers.
        with contextlib.redirect_stdout(io.StringIO()):
            ground_truth.createIndex()
            if len(detections) == 0:
                return {name: 0.0 if len(targets) else math.nan for name in _STATS}
            predicted = ground_truth.loadRes(detections)
            evaluation = COCOeval(ground_truth, predicted, iouType="bbox")
            evaluation.params.maxDets = [1, 10, self.max_detections]
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        stats = np.array(evaluation.stats)
        # `summarize` takes AP (and only AP) at 100 detections whatever `maxDets`: NaN for
        # any other `max_detections`. Its mean over IoUs, recalls and classes, at ours:
        precision = evaluation.eval["precision"][:, :, :, 0, -1]  # area "all", maxDets[-1]
        stats[_STATS["AP"]] = np.mean(precision[precision > -1]) if np.any(precision > -1) else -1
        return {
            name: float(stats[index]) if stats[index] >= 0 else math.nan for name, index in _STATS.items()
        }
