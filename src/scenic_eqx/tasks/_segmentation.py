"""Semantic segmentation: per-pixel softmax cross-entropy, pixel accuracy and global mIoU."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Shaped

from ._classification import as_number, masked_mean, masked_sum
from ._dice_loss import dice_loss
from ._label_checks import check_classes, get_label
from ._task import AbstractTask, Batch, Metrics


def _as_class_weights(value) -> tuple[float, ...] | None:
    # A hashable tuple of Python floats: the task stays a static leaf under `jax.jit`,
    # whatever sequence a config passed.
    return None if value is None else tuple(float(w) for w in value)


def pixel_weights(batch: Batch, shape: tuple[int, int, int]) -> Float[Array, "batch height width"]:
    """`batch["batch_mask"]` as one float32 weight per pixel (all ones when absent).

    Arguments:
        batch: the batch dict.
        shape: `(batch, height, width)` of the label map.

    Returns:
        Float32 weights `[batch, height, width]`: a per-example mask `[batch]` is
        broadcast over the pixels of its example, a per-pixel mask is used as given.
    """
    if "batch_mask" not in batch:
        return jnp.ones(shape, jnp.float32)
    mask = jnp.asarray(batch["batch_mask"]).astype(jnp.float32)
    if mask.shape == shape[:1]:
        return jnp.broadcast_to(mask[:, None, None], shape)
    if mask.shape == shape:
        return mask
    raise ValueError(
        f'`batch["batch_mask"]` must be a per-example mask {shape[:1]} or a per-pixel mask '
        f"{shape}, to match the label map. Received: shape {mask.shape}."
    )


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
    """Intersection over union of every class from a confusion matrix.

    Arguments:
        confusion: `[num_classes, num_classes]` pixel counts, rows the true class and
            columns the predicted one.

    Returns:
        Float64 `[num_classes]`: `tp / (tp + fp + fn)`, NaN for a class that is in
        neither the labels nor the predictions (union 0).
    """
    confusion = np.asarray(confusion, np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


class SegmentationTask(AbstractTask):
    """Semantic segmentation with per-pixel softmax cross-entropy.

    Outputs are per-pixel logits `[batch, height, width, num_classes]`;
    `batch["label"]` is an integer class map `[batch, height, width]`. Each pixel
    weighs `batch_mask` (per example `[batch]`, so padding examples weigh zero, or per
    pixel `[batch, height, width]`), and zero where its label is `ignore_label`.

    The loss is the weighted mean of the pixels' cross-entropies, each pixel also
    weighted by `class_weights[label]` when given (normalised by the sum of the
    weights, as PyTorch's `CrossEntropyLoss(weight=..., ignore_index=...)`), plus,
    with `dice_loss_coef > 0`, that coefficient times the soft Dice loss
    (`tasks.dice_loss`; Milletari et al., 3DV 2016): for every image, the mean over
    classes of one minus the Dice overlap of the class's softmax probabilities and its
    label mask over the counted pixels (each weighing its pixel weight), averaged over
    the images with any counted pixel.

    Metrics: `pixel_accuracy`, `loss` and `confusion_matrix`, whose value is the
    `[num_classes, num_classes]` matrix of weighted pixel counts (rows the true class,
    columns the predicted one; normalizer 1). The trainer sums it over devices, hosts
    and batches, and `summarize` turns the total into `mean_iou` (mean over the classes
    present in the labels or the predictions) and `iou/<class>` (NaN for a class in
    neither): a global mIoU over the whole evaluation set, not a mean of per-batch
    values, so it does not depend on the batch size.

    The counts are float32 (the metric type of every task): each cell is exact up to
    2^24 (~16.8M) pixels, i.e. ~16k images of 1024x1024 all of one class. Past that
    the sum rounds (a relative error of ~6e-8 per addition); evaluation sets of
    full-resolution Cityscapes/ADE20K size can reach it for the background cell.

    Arguments:
        ignore_label: the label of pixels that count nowhere (Pascal VOC and
            Cityscapes use 255). Any other label must be in `[0, num_classes)`.
        class_weights: optional per-class loss weights, one non-negative float per
            class; they weigh the cross-entropy only, not the metrics other than `loss`.
        dice_loss_coef: weight of the Dice term in the loss, >= 0 (0, the default,
            leaves it out). With a Dice term the metrics hold `cross_entropy` and
            `dice_loss` in place of `loss`, and `summarize` adds `loss`, the
            coefficient-weighted sum of their ratios.
    """

    # Static: configuration, not data, so that a jitted task never traces them.
    ignore_label: int = eqx.field(default=255, static=True)
    class_weights: tuple[float, ...] | None = eqx.field(
        default=None, converter=_as_class_weights, static=True
    )
    dice_loss_coef: float = eqx.field(default=0.0, converter=as_number, static=True)

    def __check_init__(self):
        if isinstance(self.ignore_label, bool) or not isinstance(self.ignore_label, int):
            raise TypeError(f"`ignore_label` must be an integer. Received: {self.ignore_label!r}.")
        weights = self.class_weights
        if weights is not None and (
            not weights
            or not all(math.isfinite(w) and w >= 0 for w in weights)
            or not any(w > 0 for w in weights)
        ):
            raise ValueError(
                f"`class_weights` must be finite non-negative floats, not all zero. Received: {weights}."
            )
        coef = self.dice_loss_coef
        if not isinstance(coef, float) or not math.isfinite(coef) or coef < 0:
            raise ValueError(f"`dice_loss_coef` must be a finite number >= 0. Received: {coef!r}.")

    def _pixels(
        self, outputs: Float[Array, "batch height width num_classes"], batch: Batch
    ) -> tuple[
        Shaped[Array, "batch height width"],
        Float[Array, "batch height width"],
        Bool[Array, "batch height width"],
    ]:
        """The label map with invalid pixels set to 0, the pixel weights (0 where invalid)
        and which pixels count (weight > 0, not `ignore_label`): those must be classes."""
        num_classes = outputs.shape[-1]
        label = jnp.asarray(get_label(batch, "SegmentationTask"))
        if label.shape != outputs.shape[:-1] or not jnp.issubdtype(label.dtype, jnp.integer):
            raise ValueError(
                f'`batch["label"]` must be an integer class map of shape {outputs.shape[:-1]}, '
                f"to match logits of shape {outputs.shape}. Received: shape {label.shape} and "
                f"dtype {label.dtype}."
            )
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            raise ValueError(
                f"`class_weights` must have one entry per class of the logits ({num_classes}). "
                f"Received: {len(self.class_weights)} entries (={self.class_weights})."
            )
        ignored = label == self.ignore_label
        mask = pixel_weights(batch, label.shape)
        valid = ~ignored & (label >= 0) & (label < num_classes)
        weights = mask * valid.astype(jnp.float32)
        return jnp.where(valid, label, 0), weights, (mask > 0) & ~ignored

    def _check_labels(self, results, label, counted, num_classes):
        return check_classes(
            results,
            label,
            counted,
            num_classes,
            extra=f" or `ignore_label` (={self.ignore_label}), on pixels that count",
        )

    def _loss_terms(self, outputs, label, weights):
        """Per-pixel cross-entropies and loss weights (mask x class weight), flattened."""
        cross_entropy = optax.losses.softmax_cross_entropy_with_integer_labels(
            outputs.astype(jnp.float32), label
        )
        if self.class_weights is not None:
            weights = weights * jnp.asarray(self.class_weights, jnp.float32)[label]
        return cross_entropy.reshape(-1), weights.reshape(-1)

    def _dice_terms(self, outputs, label, weights):
        """Every image's Dice loss (mean over classes) and whether it has a counted pixel."""
        batch_size, num_classes = outputs.shape[0], outputs.shape[-1]
        by_class = lambda x: jnp.moveaxis(x.reshape(batch_size, -1, num_classes), -1, 1)  # noqa: E731
        probabilities = by_class(jax.nn.softmax(outputs.astype(jnp.float32), axis=-1))
        targets = by_class(jax.nn.one_hot(label, num_classes, dtype=jnp.float32))
        pixel_weights = jnp.broadcast_to(weights.reshape(batch_size, 1, -1), probabilities.shape)
        per_image = dice_loss(probabilities, targets, weights=pixel_weights).mean(-1)
        has_pixels = (weights.reshape(batch_size, -1).sum(-1) > 0).astype(jnp.float32)
        return per_image, has_pixels

    def loss(self, outputs: Float[Array, "batch height width num_classes"], batch: Batch) -> Float[Array, ""]:
        """The weighted mean per-pixel softmax cross-entropy (plus the Dice term, if any).

        Arguments:
            outputs: logits `[batch, height, width, num_classes]`.
            batch: the batch dict with `label` `[batch, height, width]` and optionally
                `batch_mask` (`[batch]` or `[batch, height, width]`).

        Returns:
            A float32 scalar; 0 when no pixel weighs anything.
        """
        label, weights, counted = self._pixels(outputs, batch)
        loss = masked_mean(*self._loss_terms(outputs, label, weights))
        if self.dice_loss_coef > 0:
            loss = loss + self.dice_loss_coef * masked_mean(*self._dice_terms(outputs, label, weights))
        return self._check_labels(loss, batch["label"], counted, outputs.shape[-1])

    def metrics(self, outputs: Float[Array, "batch height width num_classes"], batch: Batch) -> Metrics:
        """`pixel_accuracy`, `loss` and `confusion_matrix` sums over the batch's pixels.

        Arguments:
            outputs: logits `[batch, height, width, num_classes]`.
            batch: the batch dict with `label` and optionally `batch_mask`.

        Returns:
            `{name: (value_sum, normalizer)}`, float32: scalars for `pixel_accuracy`
            (correct pixels, valid pixels) and `loss` (weighted cross-entropy sum, sum
            of the weights; with a Dice term, `cross_entropy` and `dice_loss`, the sum
            of the images' Dice losses over the number of images with counted pixels);
            `confusion_matrix` is `([num_classes, num_classes], 1)`.
        """
        num_classes = outputs.shape[-1]
        label, weights, counted = self._pixels(outputs, batch)
        prediction = jnp.argmax(outputs, axis=-1)
        correct = (prediction == label).astype(jnp.float32)
        # A weighted bincount is a scatter-add: O(pixels), where a one-hot matmul would
        # cost O(pixels x num_classes^2).
        cell = (label * num_classes + prediction).reshape(-1)
        confusion = jnp.bincount(cell, weights.reshape(-1), length=num_classes**2)
        cross_entropy = masked_sum(*self._loss_terms(outputs, label, weights))
        if self.dice_loss_coef > 0:
            losses = {
                "cross_entropy": cross_entropy,
                "dice_loss": masked_sum(*self._dice_terms(outputs, label, weights)),
            }
        else:
            losses = {"loss": cross_entropy}
        metrics = {
            "pixel_accuracy": masked_sum(correct.reshape(-1), weights.reshape(-1)),
            **losses,
            "confusion_matrix": (
                confusion.reshape(num_classes, num_classes).astype(jnp.float32),
                jnp.ones((), jnp.float32),
            ),
        }
        return self._check_labels(metrics, batch["label"], counted, num_classes)

    def summarize(self, totals: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        """Ratios of the summed metrics, and `mean_iou`, `iou/<class>` from the confusion matrix.

        Arguments:
            totals: the `metrics` pairs summed over a run or an evaluation set.

        Returns:
            Python floats: `pixel_accuracy`, `loss` (with a Dice term also
            `cross_entropy` and `dice_loss`), `mean_iou` (NaN if no pixel
            counted) and `iou/0`, `iou/1`, ... (NaN for a class absent from both the
            labels and the predictions).
        """
        totals = dict(totals)
        confusion = totals.pop("confusion_matrix", None)
        results = super().summarize(totals)
        if {"cross_entropy", "dice_loss"} <= set(results):
            results["loss"] = results["cross_entropy"] + self.dice_loss_coef * results["dice_loss"]
        if confusion is not None:
            iou = per_class_iou(confusion[0])
            present = ~np.isnan(iou)
            results["mean_iou"] = float(iou[present].mean()) if present.any() else math.nan
            results.update({f"iou/{k}": float(v) for k, v in enumerate(iou)})
        return results
