"""Regression: weighted mean squared error (or Huber), with `mse`, `mae` and `r2` metrics."""

import math
import numbers

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Shaped

from ._classification import batch_mask, masked_mean, masked_sum
from ._label_checks import check_non_negative, get_label
from ._task import AbstractTask, Batch, Metrics

# R² of an output whose targets vary by less than this fraction of their mean square is
# that of constant targets: float32 sums cannot resolve their variance.
_CONSTANT_TARGETS = 1e-5


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


def r_squared(statistics: np.ndarray) -> float:
    """The coefficient of determination from summed statistics, averaged over outputs.

    `R² = 1 - SSE / SST` of every output (each element of an example), with
    `SST = sum(w y²) - sum(w y)² / sum(w)`, then the mean over outputs: scikit-learn's
    `r2_score(..., sample_weight=w)`, including its convention for an output whose
    targets are constant (1 if predicted exactly, else 0).

    Arguments:
        statistics: `[4, outputs]` sums over an evaluation: `sum(w)`, `sum(w y)`,
            `sum(w y²)` and `sum(w (prediction - y)²)`.

    Returns:
        R², a Python float; NaN when no example counted (`sum(w) = 0`).
    """
    weight, weighted_sum, weighted_squares, squared_errors = np.asarray(statistics, np.float64)
    if not np.any(weight > 0):
        return math.nan
    total = weighted_squares - np.square(weighted_sum) / weight
    constant = total <= _CONSTANT_TARGETS * weighted_squares
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(constant, np.where(squared_errors == 0, 1.0, 0.0), 1.0 - squared_errors / total)
    return float(np.mean(scores))


class RegressionTask(AbstractTask):
    """Regression of targets shaped like the model's outputs, e.g. `[batch, d]`.

    `batch["label"]` holds float (or integer) targets of exactly the outputs' shape
    (`[batch]`, `[batch, d]`, `[batch, height, width, channels]`, ...); any other shape
    is an error, never a broadcast. Each example weighs its `batch["batch_mask"]`
    `[batch]` (all ones when absent) times, with `weight_key`, its weight
    `batch[weight_key]` `[batch]`; padding examples may hold anything, NaN included.

    Loss: the per-example mean over elements of the squared error, or of the Huber loss
    with `huber_delta` (`0.5 e^2` for `|e| <= delta`, else `delta (|e| - 0.5 delta)`;
    Huber, "Robust Estimation of a Location Parameter", Ann. Math. Statist. 1964),
    averaged over real examples with their weights (weighted MSE).

    Metrics: `mse` and `mae` (each example's mean squared / absolute error over its
    elements) and `loss` (the per-example training loss), as `(value_sum, normalizer)`
    with the normalizer the summed weight of the real examples, as `ClassificationTask`.
    Every example has as many elements, so `mse` is also the weighted mean over all
    real elements. `r2`, the coefficient of determination `1 - SSE / SST` of each
    output averaged over outputs (scikit-learn's `r2_score`), is returned as its
    sufficient statistics `[4, outputs]` (`sum(w)`, `sum(w y)`, `sum(w y²)`,
    `sum(w e²)` per output, normalizer 1), which the trainer sums over batches and
    `summarize` turns into R²: exact at any batch split, as the target mean it needs
    is that of the whole evaluation. The sums are float32, added up batch by batch, so
    SST loses precision when the targets' mean is far larger than their spread: its
    relative error is about the sums' (1e-7 times the number of batches, at worst)
    times mean² / variance. Standardise such targets.

    Arguments:
        huber_delta: None (the default) for mean squared error; a positive number for
            the Huber loss with that threshold.
        weight_key: None (the default): every real example weighs 1; else the batch
            entry holding each example's finite non-negative weight `[batch]` (e.g.
            `"weight"`), which weighs the loss and every metric.
    """

    huber_delta: float | None = None
    weight_key: str | None = eqx.field(default=None, static=True)

    def __check_init__(self):
        delta = self.huber_delta
        if delta is not None and (
            isinstance(delta, bool)
            or not isinstance(delta, numbers.Real)
            or not math.isfinite(delta)
            or delta <= 0
        ):
            raise ValueError(
                "`huber_delta` must be None (mean squared error) or a positive finite "
                f"number. Received: {delta!r}."
            )
        if self.weight_key is not None and (not isinstance(self.weight_key, str) or not self.weight_key):
            raise ValueError(
                "`weight_key` must be None (every example weighs 1) or the name of the batch entry "
                f"holding the example weights. Received: {self.weight_key!r}."
            )

    def example_weights(
        self, outputs: Float[Array, "batch *example"], batch: Batch
    ) -> Float[Array, " batch"]:
        """`batch_mask` times the example weights of `weight_key`, as float32 `[batch]`.

        Padding examples (`batch_mask` 0) weigh 0 whatever their weight, NaN included.
        """
        mask = batch_mask(batch, outputs.shape[0])
        if self.weight_key is None:
            return mask
        if self.weight_key not in batch:
            raise ValueError(
                f"`batch` must have a {self.weight_key!r} entry of example weights, which "
                f"RegressionTask(weight_key={self.weight_key!r}) reads. Received: a batch with keys "
                f"{sorted(map(str, batch))}."
            )
        weights = jnp.asarray(batch[self.weight_key])
        if weights.shape != mask.shape:
            raise ValueError(
                f"`batch[{self.weight_key!r}]` must have shape {mask.shape}, one weight per example. "
                f"Received: shape {weights.shape}."
            )
        if not (jnp.issubdtype(weights.dtype, jnp.floating) or jnp.issubdtype(weights.dtype, jnp.integer)):
            raise ValueError(
                f"`batch[{self.weight_key!r}]` must hold numeric weights. Received: dtype {weights.dtype}."
            )
        weights = weights.astype(jnp.float32)
        combined = jnp.where(mask > 0, mask * weights, 0.0)
        return check_non_negative(combined, weights, mask > 0, what=f"`batch[{self.weight_key!r}]`")

    def per_example_loss(
        self, outputs: Float[Array, "batch *example"], batch: Batch
    ) -> Float[Array, " batch"]:
        """Squared error (or Huber loss) averaged over each example's elements.

        Arguments:
            outputs: predictions `[batch, ...]`.
            batch: the batch dict; `batch["label"]` and `batch["batch_mask"]` are read.

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
        """The weighted mean of `per_example_loss` over the real examples.

        Arguments:
            outputs: predictions `[batch, ...]`.
            batch: the batch dict with `label` (shaped like `outputs`) and optionally
                `batch_mask` `[batch]` and the weights of `weight_key`.

        Returns:
            A float32 scalar; 0 for a batch that is all padding (or weighs 0).
        """
        weights = self.example_weights(outputs, batch)
        return masked_mean(self.per_example_loss(outputs, batch), weights)

    def metrics(self, outputs: Float[Array, "batch *example"], batch: Batch) -> Metrics:
        """`mse`, `mae` and `loss`, summed over the real examples, and `r2`'s statistics.

        Arguments:
            outputs: predictions `[batch, ...]`.
            batch: the batch dict with `label` (shaped like `outputs`) and optionally
                `batch_mask` `[batch]` and the weights of `weight_key`.

        Returns:
            `{name: (value_sum, normalizer)}`, float32: scalars for `mse`, `mae` and
            `loss`, normalised by the summed weight of the real examples; `r2` is
            `([4, outputs], 1)` (see the class docstring).
        """
        weights = self.example_weights(outputs, batch)
        errors = _errors(outputs, batch)
        per_example = {
            "mse": _per_example_mean(jnp.square(errors)),
            "mae": _per_example_mean(jnp.abs(errors)),
            "loss": self.per_example_loss(outputs, batch),
        }
        metrics = {name: masked_sum(values, weights) for name, values in per_example.items()}
        metrics["r2"] = (self._r2_statistics(outputs, batch, errors, weights), jnp.ones((), jnp.float32))
        return metrics

    def _r2_statistics(self, outputs, batch, errors, weights) -> Float[Array, "4 outputs"]:
        """`sum(w)`, `sum(w y)`, `sum(w y²)`, `sum(w e²)` of every output, over the batch."""
        batch_size = outputs.shape[0]
        real = (weights > 0)[:, None]
        targets = jnp.where(real, _targets(outputs, batch).reshape(batch_size, -1), 0.0)
        squared_errors = jnp.square(errors.reshape(batch_size, -1))
        total_weight = jnp.broadcast_to(jnp.sum(weights), targets.shape[1:])
        weighted = lambda values: jnp.sum(weights[:, None] * values, axis=0)  # noqa: E731
        return jnp.stack(
            [total_weight, weighted(targets), weighted(jnp.square(targets)), weighted(squared_errors)]
        )

    def summarize(self, totals: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        """The ratios of the summed metrics, and `r2` from its summed statistics (`r_squared`).

        Arguments:
            totals: the `metrics` pairs summed over a run or an evaluation set.

        Returns:
            Python floats: `mse`, `mae`, `loss` and `r2` (NaN if no example counted).
        """
        totals = dict(totals)
        statistics = totals.pop("r2", None)
        results = super().summarize(totals)
        if statistics is not None:
            results["r2"] = r_squared(statistics[0])
        return results
