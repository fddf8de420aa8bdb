"""Single-label classification: softmax cross-entropy and top-k accuracy."""

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PyTree, Shaped

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


class ClassificationTask(AbstractTask):
    """Single-label classification with softmax cross-entropy.

    Outputs are logits `[batch, num_classes]`. `batch["label"]` holds either integer
    class indices `[batch]` or one-hot/soft targets `[batch, num_classes]` (told apart
    by rank). Loss and metrics are weighted by `batch["batch_mask"]` (all ones when
    absent).

    Metrics: `accuracy` (top-1; the class of one-hot/soft targets is their argmax),
    `top_5_accuracy` (only when `num_classes >= 5`) and `loss` (the per-example
    training loss, label smoothing included).

    Arguments:
        label_smoothing: mass moved from the targets onto the uniform distribution,
            in `[0, 1)`; 0 turns smoothing off. Szegedy et al., "Rethinking the
            Inception Architecture for Computer Vision", CVPR 2016.
    """

    label_smoothing: float = 0.0

    def __check_init__(self):
        check_smoothing(self.label_smoothing)

    def per_example_loss(
        self, outputs: Float[Array, "batch num_classes"], batch: Batch
    ) -> Float[Array, " batch"]:
        """Softmax cross-entropy of each example against its (smoothed) targets.

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
        return optax.losses.softmax_cross_entropy(logits, targets)

    def loss(self, outputs: Float[Array, "batch num_classes"], batch: Batch) -> Float[Array, ""]:
        """The `batch_mask`-weighted mean softmax cross-entropy.

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
        """`accuracy`, `top_5_accuracy` (if `num_classes >= 5`) and `loss`.

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
        targets = _targets(outputs, label)
        classes = label if label.ndim == 1 else jnp.argmax(targets, axis=-1)
        correct = jnp.argmax(outputs, axis=-1) == classes
        metrics = {"accuracy": masked_sum(correct.astype(jnp.float32), mask)}
        if num_classes >= 5:
            _, top5 = jax.lax.top_k(outputs, 5)
            in_top5 = jnp.any(top5 == classes[:, None], axis=-1)
            metrics["top_5_accuracy"] = masked_sum(in_top5.astype(jnp.float32), mask)
        metrics["loss"] = masked_sum(self.per_example_loss(outputs, batch), mask)
        return check_class_indices(metrics, outputs, batch)
