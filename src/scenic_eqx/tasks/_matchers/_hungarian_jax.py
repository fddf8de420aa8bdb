"""Exact matching on the device: shortest augmenting paths with potentials, in JAX loops."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Shaped

from ._common import match


def _solve_one(cost: Float[Array, "k l"]) -> Int[Array, " k"]:
    """The column matched to each row in an optimal assignment of a `k x l` cost, k <= l.

    Rows join one at a time. For each new row a Dijkstra-like search over reduced costs
    `cost[i, j] - u[i] - v[j]` (which the dual potentials `u`, `v` keep non-negative,
    and zero on matched pairs) finds the cheapest alternating path to a free column, and
    the path is flipped. Jonker & Volgenant 1987, "A shortest augmenting path algorithm
    for dense and sparse linear assignment problems"; this is the rectangular form,
    which needs no padding to a square matrix when rows are the smaller side.

    Indices are 1-based, as in the textbook form: column 0 is a virtual column where
    each search starts (with cost 0 to every row) and row 0 means "no row". Row
    potentials are not stored: a row on the search tree sits at a used column `c`
    through a tight pair, so `u[row] = cost[row, c] - v[c]`. That saves a scatter-add
    into `u` per step.
    """
    k, l = cost.shape
    a = jnp.pad(cost, ((1, 0), (1, 0)))
    inf = jnp.asarray(jnp.inf, cost.dtype)

    def add_row(i, state):
        v, row_of_col = state
        # v[0] belongs to the virtual column, so it tracks -u[i] for the new row.
        v = v.at[0].set(0)
        row_of_col = row_of_col.at[0].set(i)

        # Grow the shortest-path tree one column at a time until it reaches a free one.
        def grow(search):
            v, via, min_slack, used, col = search
            used = used.at[col].set(True)
            row = row_of_col[col]
            slack = a[row] - (a[row, col] - v[col]) - v
            better = ~used & (slack < min_slack)
            min_slack = jnp.where(better, slack, min_slack)
            via = jnp.where(better, col, via)
            candidates = jnp.where(used, inf, min_slack)
            next_col = jnp.argmin(candidates).astype(jnp.int32)
            # With no unused column reachable at a finite cost (infinite or NaN costs),
            # argmin may return a used column: take the first unused one instead, so
            # that every step adds a column and the search always ends.
            first_unused = jnp.argmin(used).astype(jnp.int32)
            next_col = jnp.where(used[next_col], first_unused, next_col)
            delta = candidates[next_col]
            delta = jnp.where(jnp.isfinite(delta), delta, 0)
            # Shift the potentials by the path length so tree pairs stay tight.
            v = jnp.where(used, v - delta, v)
            min_slack = jnp.where(used, min_slack, min_slack - delta)
            return v, via, min_slack, used, next_col

        search = (
            v,
            jnp.zeros((l + 1,), jnp.int32),
            jnp.full((l + 1,), inf),
            jnp.zeros((l + 1,), bool),
            jnp.int32(0),
        )
        v, via, _, _, col = jax.lax.while_loop(lambda search: row_of_col[search[-1]] != 0, grow, search)

        # Flip the path back to the virtual column: each column takes its predecessor's row.
        def flip(path):
            row_of_col, col = path
            previous = via[col]
            return row_of_col.at[col].set(row_of_col[previous]), previous

        row_of_col, _ = jax.lax.while_loop(lambda path: path[1] != 0, flip, (row_of_col, col))
        return v, row_of_col

    state = (jnp.zeros((l + 1,), cost.dtype), jnp.zeros((l + 1,), jnp.int32))
    _, row_of_col = jax.lax.fori_loop(1, k + 1, add_row, state)
    # Unmatched columns (row 0) all write to slot 0, which is dropped.
    col_of_row = jnp.zeros((k + 1,), jnp.int32).at[row_of_col[1:]].set(jnp.arange(l))
    return col_of_row[1:]


def hungarian_jax_matcher(
    cost: Float[Array, "batch n m"], target_mask: Shaped[Array, "batch m"] | None = None
) -> Int[Array, "batch 2 k"]:
    """Optimal bipartite matching in pure JAX, on the device (no host round-trip).

    Same problem and output as `hungarian_matcher` (the linear sum assignment; Kuhn
    1955), solved by the shortest augmenting path algorithm with dual potentials of
    Jonker & Volgenant 1987 in `lax.fori_loop`/`lax.while_loop`, vmapped over the batch.
    It takes `O(k^2 l)` time for `k = min(n, m)`, `l = max(n, m)`, as about `k^2 / 2`
    sequential loop steps over vectors of length `l`; under `vmap` each step waits for
    the slowest problem of the batch. Jittable; no gradient flows through the matching.

    Arguments:
        cost: `[batch, n, m]` costs of matching prediction `i` to target `j`. `+inf`
            forbids a pair (as for scipy); with NaNs, or no finite matching, the result
            is still a valid matching (the loops always end) but not an optimal one.
        target_mask: optional `[batch, m]`, nonzero (True) for real targets; see
            `hungarian_matcher`.

    Returns:
        `[batch, 2, min(n, m)]` int32 index pairs (row 0 predictions, row 1 targets),
        laid out as by `hungarian_matcher`: when `n >= m` row 1 is `arange(m)`,
        otherwise row 0 is `arange(n)`.
    """
    # Padded targets are already priced in: they cost more than every real one.
    return match(lambda c, _: jax.vmap(_solve_one)(c), cost, target_mask)
