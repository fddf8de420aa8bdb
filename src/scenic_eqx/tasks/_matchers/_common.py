"""What every matcher shares: input checks, padded targets, and the output layout.

Every matcher solves the problem with the smaller side as rows (`k = min(n, m)` rows,
`l = max(n, m)` columns); on ties (`n == m`) the targets are the rows. A solver maps a
batch of such `[batch, k, l]` costs to `partner [batch, k]`, the column matched to each
row, and `match` turns that back into Scenic's `[batch, 2, k]` index pairs. Solvers also
get `padded [batch, k, l]`, True on pairs with a padded target, for approximate solvers
that need more than the padded cost to put real targets first.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, Shaped

Solver = Callable[[Float[Array, "batch k l"], Bool[Array, "batch k l"]], Int[Array, "batch k"]]


def check_inputs(cost, target_mask) -> None:
    """Raises a ValueError naming the argument when `cost` or `target_mask` is malformed.

    Under the test suite's jaxtyping checks the annotations of the public matchers catch
    these first; this keeps the errors clear for callers that run without them.
    """
    shape = getattr(cost, "shape", None)
    if shape is None or len(shape) != 3:
        raise ValueError(f"`cost` must have shape [batch, n, m]. Received: shape {shape}.")
    if not jnp.issubdtype(cost.dtype, jnp.floating):
        raise ValueError(f"`cost` must be a floating-point array. Received: dtype {cost.dtype}.")
    if target_mask is not None:
        mask_shape = getattr(target_mask, "shape", None)
        if mask_shape != (shape[0], shape[2]):
            raise ValueError(
                f"`target_mask` must have shape [batch, m] = {(shape[0], shape[2])} to "
                f"match `cost` of shape {shape}. Received: shape {mask_shape}."
            )


def mask_padded_targets(
    cost: Float[Array, "batch n m"], target_mask: Shaped[Array, "batch m"]
) -> Float[Array, "batch n m"]:
    """Gives padded targets one constant cost, above every real target's cost.

    A constant column adds the same amount to every matching that uses it, and a cost
    strictly above every real entry makes any matching that leaves a real target
    unmatched while using a padded one strictly worse (swap the two). So an optimal
    matching of the masked cost matches `min(n, num_real)` real targets, to distinct
    predictions, at the optimal cost of the matrix sliced to the real targets.
    """
    if 0 in cost.shape[1:]:
        return cost  # No prediction or no target: nothing to price, no maximum to take.
    real = target_mask.astype(bool)[:, None, :]  # Nonzero is real, whatever the mask's dtype.
    largest = jnp.max(jnp.where(real, cost, -jnp.inf), axis=(1, 2), keepdims=True)
    # Double the magnitude rather than add 1, so the gap survives float32 rounding of
    # large costs; with no real target any constant will do.
    padded = largest + jnp.maximum(1.0, jnp.abs(largest))
    padded = jnp.where(jnp.isfinite(padded), padded, 0.0).astype(cost.dtype)
    return jnp.where(real, cost, padded)


def match(
    solver: Solver,
    cost: Float[Array, "batch n m"],
    target_mask: Shaped[Array, "batch m"] | None,
) -> Int[Array, "batch 2 k"]:
    """Runs `solver` with the smaller side as rows; returns `[batch, 2, min(n, m)]` pairs."""
    check_inputs(cost, target_mask)
    # Matchers pick indices: no gradient flows through them, and the loops inside the
    # on-device solvers could not be reverse-differentiated anyway.
    cost = jax.lax.stop_gradient(cost)
    padded = jnp.zeros(cost.shape, bool)
    if target_mask is not None:
        cost = mask_padded_targets(cost, target_mask)
        padded = jnp.broadcast_to(~target_mask.astype(bool)[:, None, :], cost.shape)
    batch, n, m = cost.shape
    k = min(n, m)
    if k == 0:
        return jnp.zeros((batch, 2, 0), jnp.int32)
    targets_are_rows = n >= m
    if targets_are_rows:
        cost, padded = jnp.swapaxes(cost, 1, 2), jnp.swapaxes(padded, 1, 2)
    partner = solver(cost, padded).astype(jnp.int32)
    rows = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), (batch, k))
    pairs = (partner, rows) if targets_are_rows else (rows, partner)
    return jnp.stack(pairs, axis=1)
