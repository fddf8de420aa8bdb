"""Greedy matching: repeatedly take the cheapest remaining pair (jittable)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Shaped

from ._common import match


def greedy_solve_one(cost: Float[Array, "k l"]) -> Int[Array, " k"]:
    """The column matched to each row when taking the cheapest free pair `k` times, k <= l."""
    k, l = cost.shape

    def take_cheapest(state, _):
        partner, free_row, free_col = state
        # Taken rows and columns are excluded by masks rather than by overwriting costs
        # with a sentinel, so a cost equal to the sentinel could never be picked twice.
        available = free_row[:, None] & free_col[None, :]
        flat = jnp.argmin(jnp.where(available, cost, jnp.inf))
        # If every free pair costs +inf, argmin falls back to index 0; pick the first
        # available pair instead so the result stays a matching.
        flat = jnp.where(available.reshape(-1)[flat], flat, jnp.argmax(available))
        row, col = jnp.divmod(flat, l)
        state = (
            partner.at[row].set(col.astype(jnp.int32)),
            free_row.at[row].set(False),
            free_col.at[col].set(False),
        )
        return state, None

    init = (jnp.zeros((k,), jnp.int32), jnp.ones((k,), bool), jnp.ones((l,), bool))
    (partner, _, _), _ = jax.lax.scan(take_cheapest, init, length=k)
    return partner


def greedy_matcher(
    cost: Float[Array, "batch n m"], target_mask: Shaped[Array, "batch m"] | None = None
) -> Int[Array, "batch 2 k"]:
    """Greedy bipartite matching: take the globally cheapest remaining pair, repeat.

    Scenic's greedy matcher: `min(n, m)` steps, each an argmin over the whole cost with
    matched rows and columns excluded. Cheap and jittable, but not optimal: its total
    cost is at least the optimum, and equals it when, for instance, every pair of the
    optimal matching is cheaper than every other pair. No gradient flows through it.

    Arguments:
        cost: `[batch, n, m]` costs of matching prediction `i` to target `j` (any
            values: infinite and NaN costs still give a valid matching).
        target_mask: optional `[batch, m]`, nonzero (True) for real targets. Padded
            targets get a cost above every real one, so real targets are matched first.

    Returns:
        `[batch, 2, min(n, m)]` int32 index pairs (row 0 predictions, row 1 targets),
        laid out as by `hungarian_matcher`: when `n >= m` row 1 is `arange(m)`,
        otherwise row 0 is `arange(n)`.
    """
    # Padded targets cost more than every real one, so they are already taken last.
    return match(lambda c, _: jax.vmap(greedy_solve_one)(c), cost, target_mask)
