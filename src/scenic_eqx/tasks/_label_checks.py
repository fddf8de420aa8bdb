"""Checks of the labels a task reads: a missing key or a class outside the logits is an error.

`jax.nn.one_hot` of a class index outside `[0, num_classes)` is all zeros, and a gather
at it is clamped: either way a wrong label would train and evaluate silently (a 1-based
label set trains on nothing). Labels are concrete when a task is called eagerly: the
check then raises a `ValueError` on the host. Inside the jitted step they are traced:
the check runs on the device and, when it fails, a callback raises the same message
(naming the offending values and `num_classes`) from every device, so the step ends
with a `JaxRuntimeError` carrying it, which reaches the caller of `loops.fit` and
`loops.evaluate`. (`eqx.error_if` raises from one device only: on a multi-device mesh
the others would wait for it in the step's collectives until XLA aborts the process.)
"""

import logging
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from equinox.internal import unvmap_any, unvmap_max
from jaxtyping import Array, Bool, PyTree, Shaped

from ._task import Batch


class LabelRangeError(ValueError):
    """A label outside the range its task accepts."""


class _QuietLabelErrors(logging.Filter):
    """Drops JAX's log record of each device's failed callback: the error reaches the
    caller anyway, and logging it once per device would print it eight times on eight."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], LabelRangeError))


logging.getLogger("jax._src.debugging").addFilter(_QuietLabelErrors())

# Sentinels of the masked min/max reductions: outside every int32 label.
_BIG = np.iinfo(np.int32).max
_SMALL = np.iinfo(np.int32).min


def get_label(batch: Batch, task: str) -> PyTree:
    """`batch["label"]`, or a `ValueError` naming the keys the batch has.

    Arguments:
        batch: the batch dict.
        task: the task's name, for the message.

    Returns:
        The label pytree.
    """
    if not isinstance(batch, Mapping):
        raise ValueError(
            f'`batch` must be a dict with a "label" entry, which {task} reads. '
            f"Received: {type(batch).__name__}."
        )
    if "label" not in batch:
        raise ValueError(
            f'`batch` must have a "label" entry, which {task} reads. '
            f"Received: a batch with keys {sorted(map(str, batch))}."
        )
    return batch["label"]


def check_classes(
    results: PyTree,
    labels: Shaped[Array, "..."],
    counted: Bool[Array, "..."],
    num_classes: int,
    *,
    what: str = '`batch["label"]`',
    extra: str = "",
    unit: str = "class indices",
) -> PyTree:
    """`results`, once every counted label is checked to be in `[0, num_classes)`.

    Arguments:
        results: the loss or metrics computed from `labels`; returned unchanged.
        labels: integer labels, any shape.
        counted: True where a label counts (a real example, a real box, not an ignored
            pixel), same shape; the others are not checked, so padding may hold anything.
        num_classes: the number of classes of the logits.
        what: how the message names the labels.
        extra: appended to the valid range in the message (e.g. the ignore label).
        unit: what the labels are, for the message.

    Returns:
        `results`, unchanged.

    Raises:
        LabelRangeError: a `ValueError` naming how many labels are out of range, their
            smallest and largest value, the span of all counted labels and `num_classes`;
            from the host when the labels are concrete, else from the jitted step
            (inside a `JaxRuntimeError`).
    """
    valid = f"[0, {num_classes}) (`num_classes` = {num_classes}, the logits' last axis){extra}"
    return _check(
        results,
        labels,
        counted,
        lambda x: (x < 0) | (x >= num_classes),
        f"{what} must hold {unit} in {valid}.",
    )


def check_unit_interval(
    results: PyTree,
    values: Shaped[Array, "..."],
    counted: Bool[Array, "..."],
    *,
    what: str = '`batch["label"]`',
) -> PyTree:
    """`results`, once every counted value is checked to be in `[0, 1]` (not NaN).

    Arguments and Returns as `check_classes`, for multi-hot or soft labels.
    """
    return _check(
        results,
        values,
        counted,
        lambda x: ~((x >= 0) & (x <= 1)),
        f"{what} must hold multi-hot or soft labels in [0, 1].",
    )


def check_non_negative(
    results: PyTree,
    values: Shaped[Array, "..."],
    counted: Bool[Array, "..."],
    *,
    what: str,
) -> PyTree:
    """`results`, once every counted value is checked to be finite and >= 0.

    Arguments and Returns as `check_classes`, for weights (the message names them so).
    """
    return _check(
        results,
        values,
        counted,
        lambda x: ~((x >= 0) & (x < np.inf)),
        f"{what} must hold finite non-negative weights.",
        noun="weights",
    )


def _message(expected: str, count, *extremes, noun: str = "labels") -> str:
    """`expected`, then the number of bad values, their range and that of all counted ones."""
    extremes = [x.item() if hasattr(x, "item") else x for x in extremes]
    low, high, real_low, real_high = (f"{x:g}" if isinstance(x, float) else str(x) for x in extremes)
    return (
        f"{expected} Received: {int(count)} value(s) outside it, from {low} to {high}; the "
        f"counted {noun} span [{real_low}, {real_high}]."
    )


def _check(results, values, counted, is_bad, expected: str, noun: str = "labels"):
    """Raises `_message(expected, ...)` if `is_bad` of a counted value; else `results`."""
    if not isinstance(values, jax.core.Tracer) and not isinstance(counted, jax.core.Tracer):
        values, counted = np.asarray(values), np.asarray(counted, bool)
        bad = counted & is_bad(values)
        if bad.any():
            stats = (bad.sum(), values[bad].min(), values[bad].max())
            extremes = (values[counted].min(), values[counted].max())
            raise LabelRangeError(_message(expected, *stats, *extremes, noun=noun))
        return results

    values = jnp.asarray(values)
    if jnp.issubdtype(values.dtype, jnp.integer):
        values, big, small = values.astype(jnp.int32), _BIG, _SMALL
    else:
        values, big, small = values.astype(jnp.float32), jnp.inf, -jnp.inf
    bad = counted & is_bad(values)
    # Reduced to scalars first: the callback then reads five numbers, not the label map
    # (gathering a batch sharded over devices onto one would copy it every step). Under
    # `vmap` they are reduced over the batch too, so the `cond` keeps one predicate.
    # `initial` makes the reductions of an empty map (no boxes) well defined.
    low = lambda mask: -unvmap_max(-jnp.min(jnp.where(mask, values, big), initial=big))
    high = lambda mask: unvmap_max(jnp.max(jnp.where(mask, values, small), initial=small))
    count = unvmap_max(jnp.sum(bad, dtype=jnp.int32))
    stats = (count, low(bad), high(bad), low(counted), high(counted))

    def raise_error(count, *extremes):
        raise LabelRangeError(_message(expected, count, *extremes, noun=noun))

    def fail():
        # Run on every device (`partitioned`), each raising: a callback that raised on
        # one device only would leave the others waiting in the step's collectives.
        jax.debug.callback(raise_error, *stats, partitioned=True)

    # The callback has side effects, so the check is never dropped as dead code, even
    # when only a gradient of the results is used; the results themselves are untouched.
    jax.lax.cond(unvmap_any(bad), fail, lambda: None)
    return results
