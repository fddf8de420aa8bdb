"""Multi-label classification: per-class sigmoid cross-entropy and precision@1."""

import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Shaped

from ._classification import batch_mask, masked_mean, masked_sum
from ._label_checks import check_unit_interval, get_label
from ._task import AbstractTask, Batch, Metrics


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
    `[batch, num_classes]`. As in Scenic, the loss sums the sigmoid binary
    cross-entropy over classes, then takes the `batch_mask`-weighted mean over
    examples.

    Metrics: `prec@1` (whether the top-scoring class is a positive label; with soft
    labels, the label value of that class) and `loss` (the per-example loss).
    """

    def per_example_loss(
        self, outputs: Float[Array, "batch num_classes"], batch: Batch
    ) -> Float[Array, " batch"]:
        """Sigmoid binary cross-entropy summed over classes, for every example.

        Arguments:
            outputs: logits `[batch, num_classes]`.
            batch: the batch dict; only `batch["label"]` is read.

        Returns:
            The float32 loss of every example `[batch]`, padding included.
        """
        logits = outputs.astype(jnp.float32)
        labels = _multi_hot(logits, jnp.asarray(get_label(batch, "MultiLabelClassificationTask")))
        return jnp.sum(optax.losses.sigmoid_binary_cross_entropy(logits, labels), -1)

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
        """`prec@1` and `loss`.

        Arguments:
            outputs: logits `[batch, num_classes]`.
            batch: the batch dict with `label` and optionally `batch_mask`.

        Returns:
            `{name: (value_sum, normalizer)}`, float32 scalars summed over real
            examples.
        """
        mask = batch_mask(batch, outputs.shape[0])
        labels = _multi_hot(outputs, jnp.asarray(get_label(batch, "MultiLabelClassificationTask")))
        top1 = jnp.argmax(outputs, axis=-1)
        top1_label = jnp.take_along_axis(labels, top1[:, None], axis=-1)[:, 0]
        metrics = {
            "prec@1": masked_sum(top1_label, mask),
            "loss": masked_sum(self.per_example_loss(outputs, batch), mask),
        }
        return _checked(metrics, outputs, batch)
