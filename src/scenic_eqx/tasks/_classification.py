"""Single-label classification: softmax cross-entropy (or focal loss) and top-k accuracy."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float, PyTree, Shaped

from ._focal_loss import check_focal_parameters, softmax_focal_loss
from ._label_checks import check_classes, get_label
from ._task import AbstractTask, Batch, Metrics

# An all-padding batch has `sum(mask) == 0`; clipping the denominator makes its loss
# 0 (the numerator is 0 too) instead of NaN.
_TINY = float(jnp.finfo(jnp.float32).tiny)


def batch_mask(batch: Batch, batch_size: int) -> Float[Array, " batch"]:
    """`batch["batch_mask"]` as float32, or all ones when the batch has none.

    Arguments:
        batch: the batch dict.
        batch_size: the leading size of the model outputs, which the mask must match.

    Returns:
        A float32 array `[batch]`: 1.0 for real examples, 0.0 for padding.
    """
    if "batch_mask" not in batch:
        return jnp.ones((batch_size,), jnp.float32)
    mask = jnp.asarray(batch["batch_mask"])
    if mask.shape != (batch_size,):
        raise ValueError(
            f'`batch["batch_mask"]` must have shape ({batch_size},), one weight per example '
            f"of the outputs' leading axis. Received: shape {mask.shape}."
        )
    return mask.astype(jnp.float32)


def masked_mean(values: Float[Array, " batch"], mask: Float[Array, " batch"]) -> Float[Array, ""]:
    """`sum(values * mask) / sum(mask)`; 0 for an all-padding batch, never NaN."""
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), _TINY)


def masked_sum(
    values: Float[Array, " batch"], mask: Float[Array, " batch"]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """The `(value_sum, normalizer)` metric pair, as float32 scalars."""
    return jnp.sum(values.astype(jnp.float32) * mask), jnp.sum(mask)


def _targets(
    logits: Float[Array, "batch num_classes"], label: Shaped[Array, "..."]
) -> Float[Array, "batch num_classes"]:
    """Integer labels `[batch]` or targets `[batch, num_classes]` as float32 targets."""
    batch_size, num_classes = logits.shape
    if label.shape == (batch_size,):
        if not jnp.issubdtype(label.dtype, jnp.integer):
            raise ValueError(
                f'`batch["label"]` of shape {label.shape} must hold integer class '
                f"indices. Received: dtype {label.dtype}."
            )
        return jax.nn.one_hot(label, num_classes, dtype=jnp.float32)
    if label.shape == (batch_size, num_classes):
        return label.astype(jnp.float32)
    raise ValueError(
        f'`batch["label"]` must be integer labels of shape ({batch_size},) or one-hot/soft '
        f"targets of shape {(batch_size, num_classes)}, to match logits of shape "
        f"{logits.shape}. Received: shape {label.shape}."
    )


def check_class_indices(results: PyTree, outputs: Array, batch: Batch) -> PyTree:
    """`results`, once integer labels of real examples are checked to be classes.

    One-hot of an index outside `[0, num_classes)` is all zeros: without this check
    such a label would give a loss of 0 and train on nothing. One-hot/soft targets and
    padding examples (`batch_mask` 0) are not checked.
    """
    label = jnp.asarray(batch["label"])
    if label.ndim != 1:
        return results
    mask = batch_mask(batch, outputs.shape[0])
    return check_classes(results, label, mask > 0, outputs.shape[-1])


def check_smoothing(label_smoothing: object) -> None:
    """Raises unless `label_smoothing` is a number in `[0, 1)`."""
    try:
        value = float(label_smoothing)
    except (TypeError, ValueError):
        value = None
    if isinstance(label_smoothing, bool) or value is None or not 0.0 <= value < 1.0:
        raise ValueError(f"`label_smoothing` must be a number in [0, 1). Received: {label_smoothing!r}.")


def as_number(value: object) -> object:
    """A Python int or float as a float (so that a task field annotated `float` takes an
    int from a config); anything else unchanged, for the field's check to report."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def as_ks(value: object) -> object:
    """A list or tuple of ks as a tuple (hashable: the task stays a static leaf under
    `jax.jit`, whatever sequence a config passed); anything else unchanged."""
    return tuple(value) if isinstance(value, list | tuple) else value


def check_ks(name: str, ks: object) -> None:
    """Raises unless `ks` is a tuple of distinct integers >= 1."""
    if (
        not isinstance(ks, tuple)
        or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks)
        or len(set(ks)) != len(ks)
    ):
        raise ValueError(f"`{name}` must be a sequence of distinct integers >= 1. Received: {ks!r}.")


def in_top_k(
    logits: Float[Array, "batch num_classes"], hits: Bool[Array, "batch num_classes"], k: int
) -> Float[Array, " batch"]:
    """1.0 for the examples whose `k` highest logits include a class marked in `hits`."""
    _, top = jax.lax.top_k(logits, k)
    return jnp.any(jnp.take_along_axis(hits, top, axis=-1), axis=-1).astype(jnp.float32)


LOSS_TYPES = ("softmax_cross_entropy", "softmax_focal")


class ClassificationTask(AbstractTask):
    """Single-label classification with softmax cross-entropy (or the softmax focal loss).

    Outputs are logits `[batch, num_classes]`. `batch["label"]` holds either integer
    class indices `[batch]` or one-hot/soft/multi-hot targets `[batch, num_classes]`
    (told apart by rank). Loss and metrics are weighted by `batch["batch_mask"]` (all
    ones when absent).

    Metrics: `accuracy` (top-1), `top_<k>_accuracy` for every `k` of `top_k` up to
    `num_classes` (a larger `k` is skipped: every class is in its top k) and `loss`
    (the per-example training loss, label smoothing included). With targets
    `[batch, num_classes]` a prediction is right when it is a class of the largest
    target value: the argmax of one-hot or soft targets, any positive of multi-hot ones
    (several labels counted right, as ImageNet ReaL's).

    Arguments:
        label_smoothing: mass moved from the targets onto the uniform distribution,
            in `[0, 1)`; 0 turns smoothing off. Szegedy et al., "Rethinking the
            Inception Architecture for Computer Vision", CVPR 2016.
        top_k: the `k`s of the `top_<k>_accuracy` metrics, distinct integers >= 1.
        loss_type: `"softmax_cross_entropy"`, or `"softmax_focal"` for the focal loss
            (`tasks.softmax_focal_loss`; Lin et al., ICCV 2017).
        focal_gamma: the focal loss's focusing exponent, >= 0 (used by
            `"softmax_focal"` only).
    """

    label_smoothing: float = 0.0
    top_k: tuple[int, ...] = eqx.field(default=(5,), converter=as_ks, static=True)
    loss_type: str = eqx.field(default="softmax_cross_entropy", static=True)
    focal_gamma: float = eqx.field(default=2.0, converter=as_number, static=True)

    def __check_init__(self):
        check_smoothing(self.label_smoothing)
        check_ks("top_k", self.top_k)
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"`loss_type` must be one of {', '.join(map(repr, LOSS_TYPES))}. Received: {self.loss_type!r}."
            )
        check_focal_parameters(None, self.focal_gamma, prefix="focal_")

    def per_example_loss(
        self, outputs: Float[Array, "batch num_classes"], batch: Batch
    ) -> Float[Array, " batch"]:
        """Softmax cross-entropy (or focal loss) of each example against its (smoothed) targets.

        Arguments:
            outputs: logits `[batch, num_classes]`.
            batch: the batch dict; only `batch["label"]` is read.

        Returns:
            The float32 loss of every example `[batch]`, padding included.
        """
        logits = outputs.astype(jnp.float32)
        targets = _targets(logits, jnp.asarray(get_label(batch, "ClassificationTask")))
        # alpha = 0 leaves the targets unchanged: no Python branch on a field that
        # may be traced when the task is passed through `jax.jit`.
        targets = optax.smooth_labels(targets, self.label_smoothing)
        if self.loss_type == "softmax_focal":
            return softmax_focal_loss(logits, targets, gamma=self.focal_gamma)
        return optax.losses.softmax_cross_entropy(logits, targets)

    def loss(self, outputs: Float[Array, "batch num_classes"], batch: Batch) -> Float[Array, ""]:
        """The `batch_mask`-weighted mean of `per_example_loss`.

        Arguments:
            outputs: logits `[batch, num_classes]`.
            batch: the batch dict with `label` and optionally `batch_mask`.

        Returns:
            A float32 scalar; 0 for a batch that is all padding.
        """
        mask = batch_mask(batch, outputs.shape[0])
        loss = masked_mean(self.per_example_loss(outputs, batch), mask)
        return check_class_indices(loss, outputs, batch)

    def metrics(self, outputs: Float[Array, "batch num_classes"], batch: Batch) -> Metrics:
        """`accuracy`, `top_<k>_accuracy` (each `k` of `top_k` up to `num_classes`) and `loss`.

        Arguments:
            outputs: logits `[batch, num_classes]`.
            batch: the batch dict with `label` and optionally `batch_mask`.

        Returns:
            `{name: (value_sum, normalizer)}`, float32 scalars summed over real
            examples.
        """
        batch_size, num_classes = outputs.shape
        mask = batch_mask(batch, batch_size)
        label = jnp.asarray(get_label(batch, "ClassificationTask"))
        hits = _right_classes(outputs, label)
        metrics = {"accuracy": masked_sum(in_top_k(outputs, hits, 1), mask)}
        for k in sorted(self.top_k):
            if k <= num_classes:
                metrics[f"top_{k}_accuracy"] = masked_sum(in_top_k(outputs, hits, k), mask)
        metrics["loss"] = masked_sum(self.per_example_loss(outputs, batch), mask)
        return check_class_indices(metrics, outputs, batch)


def _right_classes(
    logits: Float[Array, "batch num_classes"],
    label: Shaped[Array, "..."],
) -> Bool[Array, "batch num_classes"]:
    """The classes a prediction may name to be right: the label, or those of the largest target."""
    targets = _targets(logits, label)
    if label.ndim == 1:
        return targets > 0
    return targets == jnp.max(targets, axis=-1, keepdims=True)
