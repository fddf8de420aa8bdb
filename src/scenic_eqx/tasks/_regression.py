"""Regression: mean squared error (or Huber), with `mse` and `mae` metrics."""

import math
import numbers

import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Shaped

from ._classification import batch_mask, masked_mean, masked_sum
from ._label_checks import get_label
from ._task import AbstractTask, Batch, Metrics


def _targets(outputs: Float[Array, "batch *example"], batch: Batch) -> Float[Array, "batch *example"]:
    """`batch["label"]` as float32, checked to have exactly the outputs' shape."""
    label = get_label(batch, "RegressionTask")
    if not hasattr(label, "shape") or not hasattr(label, "dtype"):
        raise ValueError(
            '`batch["label"]` must be one array of targets shaped like the outputs, '
            f"{tuple(outputs.shape)}. Received: {type(label).__name__}."
        )
    label = jnp.asarray(label)
    if label.shape != outputs.shape:
        hint = ""
        if label.shape + (1,) == outputs.shape:
            hint = " (the outputs have a trailing axis of 1: give labels `[n, 1]`)"
        raise ValueError(
            f'`batch["label"]` must have the shape of the outputs, {tuple(outputs.shape)}: '
            f"no broadcasting between targets and predictions{hint}. Received: label shape "
            f"{tuple(label.shape)}, outputs shape {tuple(outputs.shape)}."
        )
    if not (jnp.issubdtype(label.dtype, jnp.floating) or jnp.issubdtype(label.dtype, jnp.integer)):
        raise ValueError(
            f'`batch["label"]` must hold numeric targets (floating or integer). '
            f"Received: dtype {label.dtype}."
        )
    return label.astype(jnp.float32)


def _errors(outputs: Float[Array, "batch *example"], batch: Batch) -> Float[Array, "batch *example"]:
    """`outputs - label` in float32, zero on padding examples.

    Zeroed by `where` before any product: a NaN or infinite target in a padding row
    then reaches neither the loss nor its gradient.
    """
    mask = batch_mask(batch, outputs.shape[0])
    real = (mask > 0).reshape((-1,) + (1,) * (outputs.ndim - 1))
    return jnp.where(real, outputs.astype(jnp.float32) - _targets(outputs, batch), 0.0)


def _per_example_mean(values: Shaped[Array, "batch *example"]) -> Float[Array, " batch"]:
    """The mean over each example's elements (the value itself for scalar targets)."""
    return jnp.mean(values.reshape(values.shape[0], -1), axis=-1)


class RegressionTask(AbstractTask):
    """Regression of targets shaped like the model's outputs, e.g. `[batch, d]`.

    `batch["label"]` holds float (or integer) targets of exactly the outputs' shape
    (`[batch]`, `[batch, d]`, `[batch, height, width, channels]`, ...); any other shape
    is an error, never a broadcast. Loss and metrics are weighted by
    `batch["batch_mask"]` `[batch]` (all ones when absent); padding examples may hold
    anything, NaN included.

    Loss: the per-example mean over elements of the squared error, or of the Huber loss
    with `huber_delta` (`0.5 e^2` for `|e| <= delta`, else `delta (|e| - 0.5 delta)`;
    Huber, "Robust Estimation of a Location Parameter", Ann. Math. Statist. 1964),
    averaged over real examples.

    Metrics: `mse` and `mae` (each example's mean squared / absolute error over its
    elements) and `loss` (the per-example training loss), as `(value_sum, normalizer)`
    with the normalizer the number of real examples, as `ClassificationTask`. Every
    example has as many elements, so `mse` is also the mean over all real elements.

    Arguments:
        huber_delta: None (the default) for mean squared error; a positive number for
            the Huber loss with that threshold.
    """

    huber_delta: float | None = None

    def __check_init__(self):
        delta = self.huber_delta
        if delta is None:
            return
        if (
            isinstance(delta, bool)
            or not isinstance(delta, numbers.Real)
            or not math.isfinite(delta)
            or delta <= 0
        ):
            raise ValueError(
                "`huber_delta` must be None (mean squared error) or a positive finite "
                f"number. Received: {delta!r}."
            )

    def per_example_loss(
        self, outputs: Float[Array, "batch *example"], batch: Batch
    ) -> Float[Array, " batch"]:
        """Squared error (or Huber loss) averaged over each example's elements.

        Arguments:
            outputs: predictions `[batch, ...]`.
            batch: the batch dict; only `batch["label"]` is read.

        Returns:
            The float32 loss of every example `[batch]`; 0 for padding examples.
        """
        errors = _errors(outputs, batch)
        if self.huber_delta is None:
            losses = optax.losses.squared_error(errors)
        else:
            losses = optax.losses.huber_loss(errors, delta=self.huber_delta)
        return _per_example_mean(losses)

    def loss(self, outputs: Float[Array, "batch *example"], batch: Batch) -> Float[Array, ""]:
        """The `batch_mask`-weighted mean of `per_example_loss`.

        Arguments:
            outputs: predictions `[batch, ...]`.
            batch: the batch dict with `label` (shaped like `outputs`) and optionally
                `batch_mask` `[batch]`.

        Returns:
            A float32 scalar; 0 for a batch that is all padding.
        """
        mask = batch_mask(batch, outputs.shape[0])
        return masked_mean(self.per_example_loss(outputs, batch), mask)

    def metrics(self, outputs: Float[Array, "batch *example"], batch: Batch) -> Metrics:
        """`mse`, `mae` and `loss`, summed over the real examples.

        Arguments:
            outputs: predictions `[batch, ...]`.
            batch: the batch dict with `label` (shaped like `outputs`) and optionally
                `batch_mask` `[batch]`.

        Returns:
            `{name: (value_sum, normalizer)}`, float32 scalars; the normalizer is the
            number of real examples (the sum of `batch_mask`).
        """
        mask = batch_mask(batch, outputs.shape[0])
        errors = _errors(outputs, batch)
        per_example = {
            "mse": _per_example_mean(jnp.square(errors)),
            "mae": _per_example_mean(jnp.abs(errors)),
            "loss": self.per_example_loss(outputs, batch),
        }
        return {name: masked_sum(values, mask) for name, values in per_example.items()}
