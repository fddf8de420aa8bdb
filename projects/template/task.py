"""The template's task: classification that also reports how confident the model is.

Replace it with your own. The contract the loops rely on (`scenic_eqx.tasks.AbstractTask`):
`loss(outputs, batch)` is a scalar, `metrics(outputs, batch)` is
`{name: (value_sum, normalizer)}`, and both weigh each example by `batch["batch_mask"]`
(1.0 real, 0.0 padding), so that evaluation is exact whatever the batch size.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from scenic_eqx import tasks

Metrics = dict[str, tuple[Float[Array, ""], Float[Array, ""]]]


class ConfidenceClassificationTask(tasks.AbstractTask):
    """Softmax cross-entropy, with a `confidence` metric beside the classification ones.

    `confidence` is the mean probability the model gives to its top class; set beside
    `accuracy` it shows whether the model is over- or under-confident (Guo et al., "On
    Calibration of Modern Neural Networks", ICML 2017).

    The loss and the other metrics (`accuracy`, `top_5_accuracy`, `loss`) are those of
    `tasks.ClassificationTask`, which this task wraps: it also checks that every label is
    a class of the logits. Outputs are logits `[batch, num_classes]`; `batch["label"]`
    holds integer class indices `[batch]`.

    Arguments:
        label_smoothing: mass moved from the one-hot targets onto the uniform
            distribution, in `[0, 1)`.
    """

    classification: tasks.ClassificationTask

    def __init__(self, label_smoothing: float = 0.0):
        self.classification = tasks.ClassificationTask(label_smoothing=label_smoothing)

    def loss(self, outputs: Float[Array, "batch num_classes"], batch: dict) -> Float[Array, ""]:
        """The `batch_mask`-weighted mean cross-entropy; 0 for an all-padding batch."""
        return self.classification.loss(outputs, batch)

    def metrics(self, outputs: Float[Array, "batch num_classes"], batch: dict) -> Metrics:
        """The classification metrics and `confidence`, as `(value_sum, normalizer)` pairs."""
        metrics = self.classification.metrics(outputs, batch)
        mask = jnp.asarray(batch["batch_mask"], jnp.float32)
        top_probability = jnp.max(jax.nn.softmax(outputs.astype(jnp.float32), axis=-1), axis=-1)
        metrics["confidence"] = (jnp.sum(top_probability * mask), jnp.sum(mask))
        return metrics
