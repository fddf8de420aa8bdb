"""Set prediction for object detection: DETR's Hungarian loss (Carion et al. 2020).

Each image's predictions (a fixed number of boxes, each with class logits that end
with a "no object" logit) are matched one-to-one to its ground-truth boxes by a
bipartite matcher on a cost of class probability, L1 and GIoU distances. Matched
predictions learn their target's class and box; the rest learn "no object".

Reference: https://arxiv.org/abs/2005.12872, Section 3.1.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PyTree

from ._box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from ._classification import as_number, batch_mask
from ._coco_evaluator import CocoEvaluator
from ._detection_scoring import COCO_MAX_DETECTIONS, SCORINGS, check_scoring, select_detections
from ._focal_loss import check_focal_parameters, sigmoid_focal_loss
from ._l1_loss import box_l1_loss
from ._label_checks import check_classes, get_label
from ._matchers import greedy_matcher, hungarian_jax_matcher, hungarian_matcher, sinkhorn_matcher
from ._task import AbstractTask, Batch, Metrics

MATCHERS = {
    "hungarian": hungarian_matcher,
    "hungarian_jax": hungarian_jax_matcher,
    "greedy": greedy_matcher,
    "sinkhorn": sinkhorn_matcher,
}


def _best_exact_matcher():
    """The exact Hungarian matcher that is faster where the step runs: scipy's on a CPU
    (the callback costs nothing there; 2-3x faster than the JAX solver at 100 x 100,
    benchmarks/matchers.py), the on-device JAX solver on an accelerator (no copy to the
    host and back)."""
    return hungarian_matcher if jax.default_backend() == "cpu" else hungarian_jax_matcher


CLASSIFICATION_LOSSES = ("softmax", "focal")

_TINY = float(jnp.finfo(jnp.float32).tiny)


def scored_boxes(
    logits: Float[Array, "*batch queries classes_plus_one"],
    boxes: Float[Array, "*batch queries 4"],
    *,
    activation: str = "softmax",
    scoring: str = "top_class",
    max_detections: int = COCO_MAX_DETECTIONS,
) -> dict[str, Array]:
    """DETR's post-processing: scored, labelled boxes from each query's class logits.

    Arguments:
        logits: class logits whose last entry is "no object".
        boxes: `(cx, cy, w, h)` boxes, normalised to the image.
        activation: `"softmax"` (DETR: over all classes, "no object" included) or
            `"sigmoid"` (Deformable DETR's focal loss: each object class on its own,
            the "no object" logit unused).
        scoring: `"top_class"` (DETR: one box per query, its most probable object
            class) or `"every_class"` (Scenic's Deformable DETR: one box per query and
            class, the `max_detections` most probable kept); see `_detection_scoring`.
        max_detections: the boxes kept per image with `"every_class"`.

    Returns:
        `{"boxes": [..., detections, 4] (x0, y0, x1, y1), "scores": [..., detections],
        "labels": int32 [..., detections]}`: one box per query (`"top_class"`), or the
        `min(max_detections, queries * classes)` best, best first (`"every_class"`),
        each with its class and that class's probability.
    """
    check_scoring(scoring, max_detections)
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(f"`activation` must be 'softmax' or 'sigmoid'. Received: {activation!r}.")
    logits = logits.astype(jnp.float32)
    if activation == "sigmoid":
        probs = jax.nn.sigmoid(logits[..., :-1])
    else:
        probs = jax.nn.softmax(logits, axis=-1)[..., :-1]
    boxes = box_cxcywh_to_xyxy(boxes.astype(jnp.float32))
    return select_detections(probs, boxes, scoring=scoring, max_detections=max_detections)


def _gather(values: Array, index: Int[Array, "batch k"]) -> Array:
    """`values[b, index[b, i], ...]` for every example `b`."""
    return jax.vmap(lambda v, i: v[i])(values, index)


class DetectionTask(AbstractTask):
    """DETR's set loss over the model's final and (optionally) auxiliary predictions.

    Outputs are a dict with `pred_logits` `[batch, queries, num_classes + 1]` (the last
    class is "no object") and `pred_boxes` `[batch, queries, 4]` (`cx, cy, w, h` in
    [0, 1]), and with `aux_loss`, `aux_pred_logits` / `aux_pred_boxes` with a leading
    decoder-layer axis after the batch (as `nn.DETR` returns). `batch["label"]` is
    `{"boxes": [batch, max_boxes, 4], "labels": int [batch, max_boxes], "box_mask":
    [batch, max_boxes]}` (as the `coco/2017` and `synthetic_detection` datasets give),
    padded boxes having mask 0.

    For each set of predictions: the matcher pairs predictions with the real boxes of
    each image on the cost `class_loss_coef * -p(class) + bbox_loss_coef * L1 +
    giou_loss_coef * -GIoU`; the loss is `class_loss_coef * CE + bbox_loss_coef * L1 +
    giou_loss_coef * (1 - GIoU)`. CE is over every query, the unmatched ones labelled
    "no object" with weight `eos_coef`, normalised by the sum of the weights; L1 and
    GIoU are summed over the matched boxes and divided by the number of real boxes in
    the whole batch. The task sees the global batch (`jit` over the mesh), so that
    normaliser is the sum over every device and host, as DETR's all-reduce makes it.
    Padding examples (`batch_mask` 0) count nowhere. The loss sums the final and the
    auxiliary sets.

    With `classification_loss="focal"` (Deformable DETR; Zhu et al., ICLR 2021,
    https://arxiv.org/abs/2010.04159) the class term is the sigmoid focal loss
    (`tasks.sigmoid_focal_loss`) of the `num_classes` object logits of every query
    against its one-hot target (all zeros for "no object"; the last logit is unused),
    summed and divided by the number of real boxes, like L1 and GIoU; the matching cost
    of a class is `FL(p, 1) - FL(p, 0)` of its logit, and scores are sigmoid
    probabilities. Deformable DETR weighs it with `class_loss_coef=2`. `eos_coef` is
    then unused.

    Metrics, all of the final predictions: `loss_class`, `loss_bbox`, `loss_giou` (the
    terms above as exact ratios over the whole evaluation), `class_error` (percentage
    of matched boxes given the wrong class) and `loss`, their weighted sum. Evaluation
    also reports COCO AP through `make_evaluator` (pycocotools), scoring the final
    predictions as `coco_scoring` says (`scored_boxes`).

    Arguments:
        eos_coef: weight of the "no object" class in the cross-entropy (0.1).
        class_loss_coef, bbox_loss_coef, giou_loss_coef: weights of the three terms in
            the matching cost and the loss (1, 5, 2 in the paper).
        matcher: `"auto"` (the default: the exact Hungarian matching, by scipy on a CPU
            and on the device elsewhere), `"hungarian"` (scipy, on the host),
            `"hungarian_jax"` (on the device), `"greedy"` or `"sinkhorn"`.
        aux_loss: add the losses of the auxiliary predictions.
        classification_loss: `"softmax"` (DETR's cross-entropy) or `"focal"`.
        focal_alpha, focal_gamma: the focal loss's weight of positives (in [0, 1], or
            None for none) and focusing exponent (>= 0); 0.25 and 2 in Deformable DETR.
        coco_scoring: how COCO AP scores the predictions: `"top_class"` (DETR: each
            query's most probable class) or `"every_class"` (Scenic's Deformable DETR:
            every class of every query, the 100 most probable of each image kept).
    """

    eos_coef: float = eqx.field(default=0.1, static=True)
    class_loss_coef: float = eqx.field(default=1.0, static=True)
    bbox_loss_coef: float = eqx.field(default=5.0, static=True)
    giou_loss_coef: float = eqx.field(default=2.0, static=True)
    matcher: str = eqx.field(default="auto", static=True)
    aux_loss: bool = eqx.field(default=True, static=True)
    classification_loss: str = eqx.field(default="softmax", static=True)
    focal_alpha: float | None = eqx.field(default=0.25, converter=as_number, static=True)
    focal_gamma: float = eqx.field(default=2.0, converter=as_number, static=True)
    coco_scoring: str = eqx.field(default="top_class", static=True)

    def __check_init__(self):
        if self.classification_loss not in CLASSIFICATION_LOSSES:
            raise ValueError(
                "`classification_loss` must be one of "
                f"{', '.join(map(repr, CLASSIFICATION_LOSSES))}. Received: {self.classification_loss!r}."
            )
        check_focal_parameters(self.focal_alpha, self.focal_gamma, prefix="focal_")
        if self.coco_scoring not in SCORINGS:
            raise ValueError(
                f"`coco_scoring` must be one of {', '.join(map(repr, SCORINGS))}. Received: {self.coco_scoring!r}."
            )
        if self.matcher != "auto" and self.matcher not in MATCHERS:
            raise ValueError(
                f"`matcher` must be 'auto' or one of {', '.join(map(repr, MATCHERS))}. "
                f"Received: {self.matcher!r}."
            )
        for name in ("eos_coef", "class_loss_coef", "bbox_loss_coef", "giou_loss_coef"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"`{name}` must be a finite non-negative number. Received: {value!r}.")

    def _targets(self, outputs: PyTree, batch: Batch):
        logits = outputs["pred_logits"]
        label = get_label(batch, "DetectionTask")
        if not isinstance(label, dict) or not {"boxes", "labels", "box_mask"} <= set(label):
            keys = sorted(label) if isinstance(label, dict) else type(label).__name__
            raise ValueError(
                f'`batch["label"]` must be a dict with "boxes", "labels" and "box_mask". Received: {keys}.'
            )
        batch_size = logits.shape[0]
        boxes, labels = jnp.asarray(label["boxes"]), jnp.asarray(label["labels"])
        max_boxes = labels.shape[-1] if labels.ndim else 0
        if boxes.shape != (batch_size, max_boxes, 4) or labels.shape != (batch_size, max_boxes):
            raise ValueError(
                f'`batch["label"]` must have "boxes" [{batch_size}, max_boxes, 4] and "labels" '
                f"[{batch_size}, max_boxes], {batch_size} the outputs' batch size. Received: "
                f"boxes {boxes.shape} and labels {labels.shape}."
            )
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(
                f'`batch["label"]["labels"]` must hold integer class indices. Received: dtype {labels.dtype}.'
            )
        valid = jnp.asarray(label["box_mask"]).astype(jnp.float32)
        if valid.shape != labels.shape:
            raise ValueError(
                f'`batch["label"]["box_mask"]` must have shape {labels.shape}, to match the '
                f"labels. Received: shape {valid.shape}."
            )
        valid = valid * batch_mask(batch, batch_size)[:, None]
        return boxes.astype(jnp.float32), labels.astype(jnp.int32), valid

    def _check_labels(self, results, labels, valid, num_classes):
        # An out-of-range class would otherwise be clamped by the gathers (into "no
        # object" or the last class). Padded boxes may hold anything.
        return check_classes(
            results,
            labels,
            valid > 0,
            num_classes,
            what='`batch["label"]["labels"]`',
            extra=" for real boxes (`box_mask` 1 in real examples)",
        )

    def _terms(self, logits, boxes, target_boxes, target_labels, valid, example_mask):
        """Matches one set of predictions; the `(sum, normaliser)` pair of each term."""
        num_classes = logits.shape[-1] - 1
        logits = logits.astype(jnp.float32)
        boxes = boxes.astype(jnp.float32)
        # Pairwise [batch, queries, max_boxes] terms, computed once for the matching
        # (which stops their gradient) and gathered at the matched pairs for the loss.
        at_targets = jax.vmap(lambda values, t: values[:, t])
        if self.classification_loss == "focal":
            # Deformable DETR's class cost: the focal loss of a positive minus that of a negative.
            object_logits = logits[..., :-1]
            positive = self._focal(object_logits, jnp.ones_like(object_logits))
            negative = self._focal(object_logits, jnp.zeros_like(object_logits))
            class_cost = at_targets(positive - negative, target_labels)
        else:
            class_cost = -at_targets(jax.nn.softmax(logits, axis=-1), target_labels)
        l1 = box_l1_loss(boxes[:, :, None, :], target_boxes[:, None, :, :])
        giou = generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes))
        cost = self.bbox_loss_coef * l1 + self.class_loss_coef * class_cost - self.giou_loss_coef * giou
        match = _best_exact_matcher() if self.matcher == "auto" else MATCHERS[self.matcher]
        pairs = match(cost, valid)
        query, target = pairs[:, 0], pairs[:, 1]
        matched = _gather(valid, target)  # [batch, k]: 1 for a pair with a real box
        pair = jax.vmap(lambda m, q, t: m[q, t])

        # Class targets: "no object" everywhere but at the queries matched to real boxes.
        matched_labels = jnp.where(matched > 0, _gather(target_labels, target), num_classes)
        classes = jax.vmap(lambda q, c: jnp.full(logits.shape[1], num_classes).at[q].set(c))(
            query, matched_labels
        )
        num_boxes = jnp.sum(valid)
        if self.classification_loss == "focal":
            # "No object" (class num_classes) is all zeros: no object logit is positive.
            one_hot = jax.nn.one_hot(classes, num_classes, dtype=jnp.float32)
            focal = jnp.sum(self._focal(logits[..., :-1], one_hot), axis=-1)
            loss_class = (jnp.sum(focal * example_mask[:, None]), num_boxes)
        else:
            weights = jnp.where(classes == num_classes, self.eos_coef, 1.0) * example_mask[:, None]
            cross_entropy = optax.losses.softmax_cross_entropy_with_integer_labels(logits, classes)
            loss_class = (jnp.sum(weights * cross_entropy), jnp.sum(weights))
        wrong = (jnp.argmax(logits[..., :-1], axis=-1) != classes).astype(jnp.float32)
        return {
            "loss_class": loss_class,
            "loss_bbox": (jnp.sum(pair(l1, query, target) * matched), num_boxes),
            "loss_giou": (jnp.sum((1 - pair(giou, query, target)) * matched), num_boxes),
            "class_error": (100 * jnp.sum(_gather(wrong, query) * matched), jnp.sum(matched)),
        }

    def _focal(self, object_logits: Array, targets: Array) -> Array:
        return sigmoid_focal_loss(object_logits, targets, alpha=self.focal_alpha, gamma=self.focal_gamma)

    def _prediction_sets(self, outputs: PyTree) -> list[tuple[Array, Array]]:
        """`(logits, boxes)` of the final predictions, then of each auxiliary set."""
        sets = [(outputs["pred_logits"], outputs["pred_boxes"])]
        if self.aux_loss and "aux_pred_logits" in outputs:
            aux_logits, aux_boxes = outputs["aux_pred_logits"], outputs["aux_pred_boxes"]
            sets += [(aux_logits[:, i], aux_boxes[:, i]) for i in range(aux_logits.shape[1])]
        return sets

    def _weighted_sum(self, ratios: dict[str, Array | float]) -> Array | float:
        return (
            self.class_loss_coef * ratios["loss_class"]
            + self.bbox_loss_coef * ratios["loss_bbox"]
            + self.giou_loss_coef * ratios["loss_giou"]
        )

    def loss(self, outputs: PyTree, batch: Batch) -> Float[Array, ""]:
        """The Hungarian loss summed over the final and auxiliary prediction sets.

        Arguments:
            outputs: the model's output dict (see the class docstring).
            batch: the batch dict with the `label` dict and optionally `batch_mask`.

        Returns:
            A float32 scalar.
        """
        target_boxes, target_labels, valid = self._targets(outputs, batch)
        example_mask = batch_mask(batch, valid.shape[0])
        total = jnp.zeros((), jnp.float32)
        for logits, boxes in self._prediction_sets(outputs):
            terms = self._terms(logits, boxes, target_boxes, target_labels, valid, example_mask)
            # DETR clamps the number of boxes at 1: a batch without boxes has box losses 0
            # (and focal class loss the sum over its queries).
            class_floor = 1.0 if self.classification_loss == "focal" else _TINY
            ratios = {
                "loss_class": terms["loss_class"][0] / jnp.maximum(terms["loss_class"][1], class_floor),
                "loss_bbox": terms["loss_bbox"][0] / jnp.maximum(terms["loss_bbox"][1], 1.0),
                "loss_giou": terms["loss_giou"][0] / jnp.maximum(terms["loss_giou"][1], 1.0),
            }
            total = total + self._weighted_sum(ratios)
        num_classes = outputs["pred_logits"].shape[-1] - 1
        return self._check_labels(total, target_labels, valid, num_classes)

    def metrics(self, outputs: PyTree, batch: Batch) -> Metrics:
        """The loss terms of the final predictions and `class_error`, as sums.

        Returns:
            `{name: (value_sum, normalizer)}` float32 scalars for `loss_class`,
            `loss_bbox`, `loss_giou` and `class_error`; `summarize` adds `loss`.
        """
        target_boxes, target_labels, valid = self._targets(outputs, batch)
        example_mask = batch_mask(batch, valid.shape[0])
        terms = self._terms(
            outputs["pred_logits"],
            outputs["pred_boxes"],
            target_boxes,
            target_labels,
            valid,
            example_mask,
        )
        num_classes = outputs["pred_logits"].shape[-1] - 1
        return self._check_labels(terms, target_labels, valid, num_classes)

    def summarize(self, totals: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        """The ratios of the summed terms, and `loss`, their weighted sum.

        As in the loss, the box terms are divided by the number of boxes clamped at 1:
        images without objects give box losses of 0, not 0/0. (`class_error` of a set
        without any box stays NaN: no box was classified.)
        """
        totals = dict(totals)
        clamped = ("loss_bbox", "loss_giou") + (
            ("loss_class",) if self.classification_loss == "focal" else ()
        )
        for name in clamped:
            if name in totals:
                value, norm = totals[name]
                totals[name] = (value, np.maximum(np.asarray(norm), 1.0))
        with np.errstate(invalid="ignore"):  # `class_error` 0/0: documented NaN
            results = super().summarize(totals)
        if {"loss_class", "loss_bbox", "loss_giou"} <= set(results):
            results["loss"] = float(self._weighted_sum(results))
        return results

    @property
    def _activation(self) -> str:
        return "sigmoid" if self.classification_loss == "focal" else "softmax"

    def make_evaluator(self) -> CocoEvaluator:
        """A fresh COCO AP evaluator (pycocotools) for one evaluation."""
        return CocoEvaluator()

    def evaluator_inputs(self, outputs: PyTree, batch: Batch) -> dict[str, Array]:
        """The final predictions as scored boxes, with the targets, for `CocoEvaluator`.

        Returns:
            `scored_boxes` of the final predictions plus `target_boxes` (`x0, y0, x1,
            y1`), `target_labels`, `target_mask` (real boxes of real examples),
            `batch_mask` and `image_size` (`[batch, 2]`, the inputs' height and width,
            to which the normalised boxes are scaled), each with a leading batch axis.
        """
        target_boxes, target_labels, valid = self._targets(outputs, batch)
        batch_size = valid.shape[0]
        height, width = jnp.shape(batch["inputs"])[1:3]
        return {
            **scored_boxes(
                outputs["pred_logits"],
                outputs["pred_boxes"],
                activation=self._activation,
                scoring=self.coco_scoring,
            ),
            "target_boxes": box_cxcywh_to_xyxy(target_boxes),
            "target_labels": target_labels,
            "target_mask": valid,
            "batch_mask": batch_mask(batch, batch_size),
            "image_size": jnp.broadcast_to(jnp.asarray([height, width], jnp.float32), (batch_size, 2)),
        }
