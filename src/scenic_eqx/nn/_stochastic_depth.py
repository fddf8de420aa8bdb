"""Stochastic depth: drop a whole residual branch (Huang et al. 2016)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._statistics_dtype import statistics_dtype


class StochasticDepth(eqx.Module):
    """Zeroes its input with probability `rate`, else scales it by `1/(1 - rate)`.

    Applied to a residual branch of one example, it drops the branch for that example
    (Huang et al. 2016, "Deep Networks with Stochastic Depth"); under `jax.vmap` each
    example draws its own decision. Off in inference mode (`eqx.nn.inference_mode`).

    `rate` is an ordinary (non-static) field: `Encoder` with `scan_layers=True` swaps in
    each layer's rate as a traced scalar. A Python float is not an array, so it is never
    trained.

    Arguments:
        rate: probability of dropping the branch, in `[0, 1)`.
    """

    rate: float | Array
    inference: bool

    def __init__(self, rate: float = 0.0, *, inference: bool = False):
        if not 0 <= rate < 1:
            raise ValueError(f"`rate` (={rate}) must be in [0, 1)")
        self.rate = rate
        self.inference = inference

    def __call__(
        self, x: Float[Array, "*shape"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "*shape"]:
        """Returns `x` scaled by `1/(1 - rate)`, or zeros with probability `rate`."""
        if self.inference or (isinstance(self.rate, (int, float)) and self.rate == 0):
            return x
        if key is None:
            raise ValueError(
                "`key` is required for stochastic depth in training; pass a key or "
                "switch to inference with `eqx.nn.inference_mode(model)`"
            )
        # In float32 for half-precision `x`: a bfloat16 uniform draw takes one of 128
        # values, and `1 - rate` rounded to bfloat16 (0.9 -> 0.8984) would bias the scale.
        compute = statistics_dtype(x.dtype)
        keep_prob = 1 - jax.lax.stop_gradient(jnp.asarray(self.rate, compute))
        keep = jax.random.bernoulli(key, keep_prob)
        scaled = (x.astype(compute) / keep_prob).astype(x.dtype)
        return jnp.where(keep, scaled, jnp.zeros_like(x))
