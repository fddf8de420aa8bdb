"""Exact matching on the host: scipy's `linear_sum_assignment` inside a `pure_callback`."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Shaped

from ..._extras import require
from ._common import match


def _host_solve(cost: Float[Array | np.ndarray, "*batch k l"]) -> Int[np.ndarray, "*batch k"]:
    """The column matched to each row of every `[..., k, l]` cost, `k <= l`, by scipy.

    JAX hands the callback its operand as a host-resident `jax.Array`.
    """
    # Imported here so that `import scenic_eqx` does not pay for scipy.
    from scipy.optimize import linear_sum_assignment

    cost = np.asarray(cost)
    flat = cost.reshape(-1, *cost.shape[-2:])
    partner = np.empty(flat.shape[:2], np.int32)
    for b, c in enumerate(flat):
        rows, cols = linear_sum_assignment(c)
        partner[b, rows] = cols
    return partner.reshape(cost.shape[:-1])


def _solve(cost: Float[Array, "batch k l"], padded: Bool[Array, "batch k l"]) -> Int[Array, "batch k"]:
    del padded  # Already priced in: padded targets cost more than every real one.
    # Checked while tracing: a missing scipy would otherwise fail inside the callback.
    require("scipy", "matching", 'The "hungarian" matcher')
    return jax.pure_callback(
        _host_solve,
        jax.ShapeDtypeStruct(cost.shape[:-1], jnp.int32),
        cost,
        # The host function takes any leading dimensions, so a vmap adds one axis and
        # the whole batch still crosses to the host in one call.
        vmap_method="broadcast_all",
    )


def hungarian_matcher(
    cost: Float[Array, "batch n m"], target_mask: Shaped[Array, "batch m"] | None = None
) -> Int[Array, "batch 2 k"]:
    """Optimal bipartite matching, solved on the host by scipy.

    Minimizes the total cost of a one-to-one matching between the `n` predictions and
    `m` targets (the linear sum assignment problem; Kuhn 1955, "The Hungarian method
    for the assignment problem"; scipy implements Crouse 2016's shortest augmenting
    path). The batch is copied to the host and solved there through `jax.pure_callback`,
    so it runs under `jit` and `vmap`, but each call waits for the device. No gradient
    flows through the matching (the cost is wrapped in `stop_gradient`), so a loss that
    gathers costs at the returned indices differentiates normally. See
    `hungarian_jax_matcher` for the same result without leaving the device.

    Arguments:
        cost: `[batch, n, m]` costs of matching prediction `i` to target `j`. `+inf`
            forbids a pair; scipy raises (an `XlaRuntimeError` from the callback) on
            NaNs or when no finite matching exists.
        target_mask: optional `[batch, m]`, nonzero (True) for real targets and zero for
            padding. Padded targets get a cost above every real one, so real targets are
            matched first, to distinct predictions, and the matching is optimal for the
            cost restricted to the real targets. Pairs with padded targets are still
            returned (filter them with `target_mask` gathered at row 1).

    Returns:
        `[batch, 2, min(n, m)]` int32 index pairs: row 0 indexes predictions, row 1
        targets. When `n >= m` row 1 is `arange(m)`, so `indices[:, 0, j]` is the
        prediction matched to target `j`; when `n < m` row 0 is `arange(n)`.
    """
    return match(_solve, cost, target_mask)
