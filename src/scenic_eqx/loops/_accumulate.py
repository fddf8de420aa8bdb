"""Gradient accumulation: one optimizer step from several micro-batches, inside the step."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree


def split_batch(batch: PyTree, num_micro_batches: int) -> PyTree:
    """`[batch, ...]` arrays as `[num_micro_batches, batch // num_micro_batches, ...]`.

    Micro-batch `j` holds examples `j, j + k, j + 2k, ...` (`k = num_micro_batches`):
    with the batch axis split over devices, each device keeps its own examples of every
    micro-batch, so the split moves no data between devices.

    Raises:
        ValueError: the batch size does not divide by `num_micro_batches`.
    """
    size = len(jax.tree.leaves(batch)[0])
    if size % num_micro_batches:
        raise ValueError(
            f"`accumulate_steps` (={num_micro_batches}) must divide the batch size. "
            f"Received: a batch of {size} examples."
        )

    def split(x):
        return jnp.swapaxes(x.reshape(size // num_micro_batches, num_micro_batches, *x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def _example_counts(micro_batches: PyTree, num_micro_batches: int) -> Float[Array, " micro"]:
    """Real examples per micro-batch (`batch_mask` sums; all count without a mask; a
    co-training batch's masks, one per dataset, are summed together)."""
    if "batch_mask" in micro_batches:
        masks = jax.tree.leaves(micro_batches["batch_mask"])
        return sum(jnp.sum(mask.astype(jnp.float32).reshape(num_micro_batches, -1), axis=1) for mask in masks)
    size = len(jax.tree.leaves(micro_batches)[0][0])
    return jnp.full((num_micro_batches,), float(size))


def accumulate_gradients(
    loss_grads_and_metrics: Callable,
    params: PyTree,
    static: PyTree,
    model_state: PyTree,
    batch: PyTree,
    key: PRNGKeyArray,
    num_micro_batches: int,
) -> tuple[Float[Array, ""], PyTree, PyTree, PyTree]:
    """Loss, gradient and metrics of `batch` computed over micro-batches with `lax.scan`.

    Each micro-batch's loss and gradient are weighted by its share of the batch's real
    examples (`batch_mask`), so for a task whose loss is a `batch_mask`-weighted mean
    over examples (classification, segmentation) the result equals the gradient of the
    whole batch, padding included, while only one micro-batch's activations are alive
    at a time. A loss normalised otherwise (DETR's by the number of boxes) is
    approximated by the same weighting. Metric sums are added, so metrics are exact.
    The model state (BatchNorm statistics) is threaded through the micro-batches in
    turn: BatchNorm normalises with each micro-batch's statistics and updates its
    running averages once per micro-batch. Dropout draws from `fold_in(key, j)` in
    micro-batch `j`.

    Arguments:
        loss_grads_and_metrics: `(params, static, model_state, batch, key) -> (loss,
            grads, model_state, metrics)` for one (micro-)batch.
        params, static: the trainable arrays and the rest of the model.
        model_state: the model's `eqx.nn.State`, or `None`.
        batch: the whole batch, `[batch, ...]` arrays.
        key: the step's PRNG key.
        num_micro_batches: how many micro-batches to split `batch` into.

    Returns:
        `(loss, grads, model_state, metrics)` for the whole batch.
    """
    micro_batches = split_batch(batch, num_micro_batches)
    counts = _example_counts(micro_batches, num_micro_batches)
    total = jnp.sum(counts)
    weights = jnp.where(total > 0, counts / jnp.maximum(total, 1.0), 1.0 / num_micro_batches)

    first = jax.tree.map(lambda x: x[0], micro_batches)
    shapes = eqx.filter_eval_shape(loss_grads_and_metrics, params, static, model_state, first, key)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (shapes[0], shapes[1], shapes[3]))

    def add_micro_batch(carry, inputs):
        (loss, grads, metrics), model_state = carry
        micro_batch, weight, index = inputs
        micro_loss, micro_grads, model_state, micro_metrics = loss_grads_and_metrics(
            params, static, model_state, micro_batch, jax.random.fold_in(key, index)
        )
        loss = loss + weight.astype(loss.dtype) * micro_loss
        grads = jax.tree.map(lambda g, m: g + weight.astype(m.dtype) * m, grads, micro_grads)
        metrics = jax.tree.map(jnp.add, metrics, micro_metrics)
        return ((loss, grads, metrics), model_state), None

    indices = jnp.arange(num_micro_batches)
    ((loss, grads, metrics), model_state), _ = jax.lax.scan(
        add_micro_batch, (zeros, model_state), (micro_batches, weights, indices)
    )
    return loss, grads, model_state, metrics
