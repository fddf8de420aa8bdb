"""Layer normalisation with a hand-written backward pass for its weightless core."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._statistics_dtype import statistics_dtype


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def normalize(x: Float[Array, "*batch dim"], eps: float) -> Float[Array, "*batch dim"]:
    """`(x - mean) / sqrt(var + eps)` over the last axis, without scale or bias.

    The backward pass is written by hand: with plain autodiff XLA:CPU's fusion pass
    recomputes the residual stream inside later fusions, and a transformer's backward
    pass then grows with the square of its depth (see docs/performance.md, "LayerNorm
    backward and XLA:CPU fusion").

    Arguments:
        x: the input; statistics are taken over its last axis.
        eps: added to the variance.

    Returns:
        The normalised input, same shape and dtype.
    """
    return _normalize_fwd(x, eps)[0]


def _normalize_fwd(x, eps):
    # Low-precision inputs are normalised in float32 for accurate statistics.
    xf = x.astype(statistics_dtype(x.dtype))
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    centred = xf - mean
    inv_std = jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + eps)
    y = centred * inv_std
    return y.astype(x.dtype), (y, inv_std)


def _normalize_bwd(eps, residuals, grad):
    del eps
    y, inv_std = residuals
    g = grad.astype(y.dtype)
    # d/dx of (x - mean) * inv_std, contracted with g: the two means are the
    # gradients through `mean` and through `inv_std`.
    mean_g = jnp.mean(g, axis=-1, keepdims=True)
    mean_gy = jnp.mean(g * y, axis=-1, keepdims=True)
    return ((inv_std * (g - mean_g - y * mean_gy)).astype(grad.dtype),)


normalize.defvjp(_normalize_fwd, _normalize_bwd)


class LayerNorm(eqx.Module):
    """Layer normalisation over the last axis (Ba et al. 2016).

    The learned `weight` and `bias` are applied with ordinary differentiable operations
    outside the custom backward pass of `normalize`: a `custom_vjp` holding weights in a
    module that is `vmap`ped would build one weight gradient per example.

    Arguments:
        dim: size of the normalised (last) axis.
        eps: added to the variance. Google's ViT and timm use `1e-6`, Hugging Face
            transformers `1e-12`.
        use_weight: whether to learn a scale (initialised to one).
        use_bias: whether to learn a bias (initialised to zero).
    """

    weight: Float[Array, " dim"] | None
    bias: Float[Array, " dim"] | None
    eps: float = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        eps: float = 1e-6,
        use_weight: bool = True,
        use_bias: bool = True,
        dtype=None,
    ):
        dtype = jnp.float32 if dtype is None else dtype
        self.weight = jnp.ones((dim,), dtype) if use_weight else None
        self.bias = jnp.zeros((dim,), dtype) if use_bias else None
        self.eps = eps

    def __call__(self, x: Float[Array, "*batch dim"]) -> Float[Array, "*batch dim"]:
        """Normalises `x` over its last axis, then scales and shifts it."""
        size = next((p.shape[0] for p in (self.weight, self.bias) if p is not None), None)
        if size is not None and x.shape[-1] != size:
            raise ValueError(f"last axis of `x` (shape {x.shape}) must have size `dim` (={size})")
        y = normalize(x, self.eps)
        # Explicit leading axes: the suite raises on implicit rank promotion.
        lead = (1,) * (y.ndim - 1)
        if self.weight is not None:
            y = y * self.weight.astype(y.dtype).reshape(*lead, -1)
        if self.bias is not None:
            y = y + self.bias.astype(y.dtype).reshape(*lead, -1)
        return y
