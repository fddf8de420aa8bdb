"""Multi-label classification: per-class sigmoid cross-entropy (or focal loss), precision@k, recall."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Shaped

from ._classification import as_ks, as_number, batch_mask, check_ks, masked_mean, masked_sum
from ._focal_loss import check_focal_parameters, sigmoid_focal_loss
from ._label_checks import check_unit_interval, get_label
from ._task import AbstractTask, Batch, Metrics

LOSS_TYPES = ("sigmoid_cross_entropy", "sigmoid_focal")


def _as_label_weights(value: object) -> object:
    # A hashable tuple of Python floats (the task stays a static leaf under `jax.jit`,
    # whatever sequence a config passed); anything else is left for the check to report.
    if isinstance(value, list | tuple | np.ndarray) and all(
        isinstance(w, int | float | np.number) and not isinstance(w, bool) for w in value
    ):
        return tuple(float(w) for w in value)
    return value


def _multi_hot(
    logits: Float[Array, "batch num_classes"], label: Shaped[Array, "..."]
) -> Float[Array, "batch num_classes"]:
    """Check that multi-hot labels match the logits and return them as float32."""
    if label.shape != logits.shape:
        raise ValueError(
            f'`batch["label"]` must be multi-hot labels of shape {logits.shape}, to match '
            f"the logits. Received: shape {label.shape}."
        )
    return label.astype(jnp.float32)


def _checked(results, outputs, batch: Batch):
    """`results`, once the labels of real examples are checked to lie in [0, 1].

    A label of 2, or -1 used as padding, would otherwise give a finite but meaningless
    loss: sigmoid cross-entropy is linear in the label.
    """
    label = jnp.asarray(batch["label"])
    mask = batch_mask(batch, outputs.shape[0])
    return check_unit_interval(results, label, jnp.broadcast_to((mask > 0)[:, None], label.shape))


class MultiLabelClassificationTask(AbstractTask):
    """Multi-label classification with an independent sigmoid per class.

    Outputs are logits `[batch, num_classes]`; `batch["label"]` is multi-hot (or soft)
    `[batch, num_classes]`, integer or floating, in [0, 1]. As in Scenic, the loss sums
    the sigmoid binary cross-entropy (or the sigmoid focal loss) over classes, each
    class weighted by `label_weights`, then takes the `batch_mask`-weighted mean over
    examples.

    Metrics:

    - `prec@<k>` for each `k` of `precision_at_k`: the fraction of the `k`
      top-scoring classes that are positive labels (with soft labels, their mean label
      value), averaged over examples.
    - `precision` and `recall` of the classes predicted positive, those of sigmoid
      above 0.5 (logit > 0), over every (example, class) pair of the evaluation: true
      positives over predicted positives, and over positive labels (scikit-learn's
      `average="micro"`). The sums make them exact at any batch split; either is NaN
      when its denominator is 0 over the whole evaluation.
    - `loss` (the per-example loss).

    Arguments:
        label_weights: optional loss weight of each class, `num_classes` finite
            non-negative floats, not all zero (Scenic's `label_weights`); they weigh
            the loss only.
        precision_at_k: the `k`s of the `prec@<k>` metrics, distinct integers from 1
            to `num_classes`.
        loss_type: `"sigmoid_cross_entropy"`, or `"sigmoid_focal"` for the focal loss
            (`tasks.sigmoid_focal_loss`; Lin et al., ICCV 2017).
        focal_alpha, focal_gamma: the focal loss's weight of positive labels (None, or
            in [0, 1]) and focusing exponent (>= 0); used by `"sigmoid_focal"` only.
    """

    label_weights: tuple[float, ...] | None = eqx.field(
        default=None, converter=_as_label_weights, static=True
    )
    precision_at_k: tuple[int, ...] = eqx.field(default=(1,), converter=as_ks, static=True)
    loss_type: str = eqx.field(default="sigmoid_cross_entropy", static=True)
    focal_alpha: float | None = eqx.field(default=0.25, converter=as_number, static=True)
    focal_gamma: float = eqx.field(default=2.0, converter=as_number, static=True)

    def __check_init__(self):
        weights = self.label_weights
        if weights is not None and (
            not isinstance(weights, tuple)
            or not weights
            or not all(isinstance(w, float) and math.isfinite(w) and w >= 0 for w in weights)
            or not any(w > 0 for w in weights)
        ):
            raise ValueError(
                "`label_weights` must be None or a sequence of finite non-negative floats, not all "
                f"zero. Received: {weights!r}."
            )
        check_ks("precision_at_k", self.precision_at_k)
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"`loss_type` must be one of {', '.join(map(repr, LOSS_TYPES))}. Received: {self.loss_type!r}."
            )
        check_focal_parameters(self.focal_alpha, self.focal_gamma, prefix="focal_")

    def per_example_loss(
        self, outputs: Float[Array, "batch num_classes"], batch: Batch
    ) -> Float[Array, " batch"]:
        """Sigmoid binary cross-entropy (or focal loss) summed over classes, for every example.

        Arguments:
            outputs: logits `[batch, num_classes]`.
            batch: the batch dict; only `batch["label"]` is read.

        Returns:
            The float32 loss of every example `[batch]`, padding included.
        """
        logits = outputs.astype(jnp.float32)
        labels = _multi_hot(logits, jnp.asarray(get_label(batch, "MultiLabelClassificationTask")))
        if self.loss_type == "sigmoid_focal":
            losses = sigmoid_focal_loss(logits, labels, alpha=self.focal_alpha, gamma=self.focal_gamma)
        else:
            losses = optax.losses.sigmoid_binary_cross_entropy(logits, labels)
        if self.label_weights is not None:
            if len(self.label_weights) != logits.shape[-1]:
                raise ValueError(
                    f"`label_weights` must have one entry per class of the logits ({logits.shape[-1]}). "
                    f"Received: {len(self.label_weights)} entries (={self.label_weights})."
                )
            losses = losses * jnp.asarray(self.label_weights, jnp.float32)[None, :]
        return jnp.sum(losses, -1)

    def loss(self, outputs: Float[Array, "batch num_classes"], batch: Batch) -> Float[Array, ""]:
        """The `batch_mask`-weighted mean over examples of the per-example loss.

        Arguments:
            outputs: logits `[batch, num_classes]`.
            batch: the batch dict with `label` and optionally `batch_mask`.

        Returns:
            A float32 scalar; 0 for a batch that is all padding.
        """
        mask = batch_mask(batch, outputs.shape[0])
        loss = masked_mean(self.per_example_loss(outputs, batch), mask)
        return _checked(loss, outputs, batch)

    def metrics(self, outputs: Float[Array, "batch num_classes"], batch: Batch) -> Metrics:
        """`prec@<k>` (each `k` of `precision_at_k`), `precision`, `recall` and `loss`.

        Arguments:
            outputs: logits `[batch, num_classes]`.
            batch: the batch dict with `label` and optionally `batch_mask`.

        Returns:
            `{name: (value_sum, normalizer)}`, float32 scalars summed over real
            examples: examples for `prec@<k>` and `loss`, predicted positives for
            `precision`, positive labels for `recall`.
        """
        batch_size, num_classes = outputs.shape
        mask = batch_mask(batch, batch_size)
        labels = _multi_hot(outputs, jnp.asarray(get_label(batch, "MultiLabelClassificationTask")))
        too_large = [k for k in self.precision_at_k if k > num_classes]
        if too_large:
            raise ValueError(
                f"`precision_at_k` must not exceed the number of classes of the logits "
                f"({num_classes}). Received: {self.precision_at_k}."
            )
        metrics = {}
        for k in sorted(self.precision_at_k):
            _, top = jax.lax.top_k(outputs, k)
            precision = jnp.take_along_axis(labels, top, axis=-1).mean(-1)
            metrics[f"prec@{k}"] = masked_sum(precision, mask)
        # Padding rows may hold any label (NaN included): zeroed before any product.
        real = mask[:, None] > 0
        labels = jnp.where(real, labels, 0.0)
        predicted = jnp.where(real, outputs > 0, False).astype(jnp.float32)
        true_positives = jnp.sum(labels * predicted * mask[:, None])
        metrics["precision"] = (true_positives, jnp.sum(predicted * mask[:, None]))
        metrics["recall"] = (true_positives, jnp.sum(labels * mask[:, None]))
        metrics["loss"] = masked_sum(self.per_example_loss(outputs, batch), mask)
        return _checked(metrics, outputs, batch)

    def summarize(self, totals: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        """The ratios of the summed metrics; `precision` or `recall` of 0/0 is NaN, silently.

        Arguments:
            totals: the `metrics` pairs summed over a run or an evaluation set.

        Returns:
            Python floats, one per metric.
        """
        with np.errstate(invalid="ignore"):  # no predicted positive or no positive label
            return super().summarize(totals)
