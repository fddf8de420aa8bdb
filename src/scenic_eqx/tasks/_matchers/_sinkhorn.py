"""Entropic optimal transport (log-domain Sinkhorn) rounded to a matching (jittable)."""

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Bool, Float, Int, Shaped

from ._common import match
from ._greedy import greedy_solve_one


def _sinkhorn_solve_one(
    cost: Float[Array, "k l"], padded: Bool[Array, "k l"], epsilon: float, num_iters: int
) -> Int[Array, " k"]:
    """Sinkhorn potentials for `cost`, then a greedy matching on the reduced costs."""
    k, l = cost.shape
    # Dummy rows of constant cost turn the k x l assignment into an l x l one with the
    # same optimum on the real rows, so both marginals can be uniform (one unit of mass
    # per row and per column): as epsilon -> 0 the plan tends to a permutation.
    square = jnp.pad(cost, ((0, l - k), (0, 0)))
    # Epsilon scaling: start at the cost's range, where Sinkhorn converges in a few
    # steps, and shrink geometrically to `epsilon` by half-way, warm-starting each stage
    # from the last; a small epsilon alone needs far more iterations to converge.
    start = jnp.maximum(jnp.max(square) - jnp.min(square), epsilon)
    decay = (epsilon / start) ** (1.0 / max(num_iters // 2, 1))

    # Potentials in the units of `cost`; each update makes one marginal exact. Working
    # with log-sum-exp keeps small epsilons from underflowing (Cuturi 2013, in log space).
    def update(step, potentials):
        f, g = potentials
        eps = jnp.maximum(start * decay**step, epsilon)
        f = -eps * logsumexp((g[None, :] - square) / eps, axis=1)
        g = -eps * logsumexp((f[:, None] - square) / eps, axis=0)
        return f, g

    zeros = jnp.zeros((l,), cost.dtype)
    f, g = jax.lax.fori_loop(0, num_iters, update, (zeros, zeros))
    # epsilon * -log(plan): the greedy rounding takes the heaviest transport entries
    # first without exponentiating (which would underflow to ties at 0).
    reduced = square[:k] - f[:k, None] - g[None, :]
    # A fractional plan can put more weight on a padded pair than on some real pair;
    # lifting padded pairs above all real ones makes the rounding match real targets
    # first, as the exact matchers do.
    lift = jnp.max(reduced) - jnp.min(reduced) + 1.0
    return greedy_solve_one(jnp.where(padded, reduced + lift, reduced))


def sinkhorn_matcher(
    cost: Float[Array, "batch n m"],
    target_mask: Shaped[Array, "batch m"] | None = None,
    *,
    epsilon: float = 0.01,
    num_iters: int = 100,
) -> Int[Array, "batch 2 k"]:
    """Approximate bipartite matching from an entropy-regularized transport plan.

    Solves `min_P <P, cost> - epsilon * H(P)` over plans with one unit of mass on each
    row and column (the rectangular problem is squared up with constant dummy rows) by
    Sinkhorn iterations in log space (Cuturi 2013, "Sinkhorn distances: lightspeed
    computation of optimal transport"), with epsilon shrinking geometrically from the
    cost's range to `epsilon` over the first half of the `num_iters` iterations. The plan
    is then rounded to a one-to-one matching by taking its heaviest entries greedily.
    As `epsilon` shrinks the plan tends to an optimal assignment, and on well-separated
    costs the matching is exact; where several matchings cost within about `epsilon` of
    the optimum the plan mixes them and the greedy rounding can land on a worse one.
    Jittable and vmapped over the batch; no gradient flows through the matching.

    Arguments:
        cost: `[batch, n, m]` finite costs of matching prediction `i` to target `j`
            (with infinite or NaN costs the result is still a valid matching, but
            arbitrary).
        target_mask: optional `[batch, m]`, nonzero (True) for real targets. Padded
            targets get a cost above every real one, so real targets are matched first.
        epsilon: final entropic regularization, in the units of `cost` (> 0).
        num_iters: number of Sinkhorn iterations (>= 1).

    Returns:
        `[batch, 2, min(n, m)]` int32 index pairs (row 0 predictions, row 1 targets),
        laid out as by `hungarian_matcher`: when `n >= m` row 1 is `arange(m)`,
        otherwise row 0 is `arange(n)`.
    """
    if not epsilon > 0:
        raise ValueError(f"`epsilon` must be positive. Received: {epsilon!r}.")
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"`num_iters` must be a positive integer. Received: {num_iters!r}.")
    solve = functools.partial(_sinkhorn_solve_one, epsilon=epsilon, num_iters=num_iters)
    return match(jax.vmap(solve), cost, target_mask)
