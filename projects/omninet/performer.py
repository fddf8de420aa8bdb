"""Performer attention: FAVOR+ positive orthogonal random features (Choromanski et al.,
"Rethinking Attention with Performers", ICLR 2021, arXiv:2009.14794).

The meta-learner of OmniNet (Tay et al., "OmniNet: Omnidirectional Representations from
Transformers", ICML 2021, arXiv:2103.01075) attends over the tokens of many layers at
once, `L x N` of them; the paper keeps that affordable with efficient attentions, the
kernel-based Performer among them. This file is that Performer.

Softmax attention weighs key `k` for query `q` by `exp(q . k / sqrt(d))`. FAVOR+ writes
that kernel as an expectation over random vectors `w ~ N(0, I_d)`:

    exp(x . y) = E_w[ exp(w . x - |x|^2 / 2) exp(w . y - |y|^2 / 2) ],

with `x = q / d^(1/4)` and `y = k / d^(1/4)`, and estimates it with `m` draws: the
positive features `phi(x) = exp(W x - |x|^2 / 2)` (its "positive random features",
section 2.3). The `m` rows of `W` are orthogonal in blocks of `d` (its section 2.4, lower
variance than independent draws), each scaled to the length of a Gaussian vector, so that
each row is still distributed as `N(0, I_d)`. Attention then costs `O(tokens x m x d)`
instead of `O(tokens^2 x d)`:

    out = (phi(Q) (phi(K)^T V)) / (phi(Q) (phi(K)^T 1)).

The features are positive, so every estimated weight is positive and each output is a
convex combination of the values, as with softmax.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from beartype import beartype
from jaxtyping import Array, Bool, Float, PRNGKeyArray, jaxtyped

from scenic_eqx import nn


def orthogonal_gaussian_features(
    key: PRNGKeyArray, num_features: int, dim: int
) -> Float[Array, "num_features dim"]:
    """`num_features` random vectors, each distributed as `N(0, I_dim)`, orthogonal in blocks of `dim`.

    Each block of `dim` rows is a Haar-random orthonormal basis (the QR decomposition of
    a Gaussian matrix, its signs fixed by `R`'s diagonal); each row is then scaled by
    the length of an independent Gaussian vector (chi-distributed with `dim` degrees of
    freedom), so that its marginal law is `N(0, I_dim)` (Performer, section 2.4).

    Arguments:
        key: PRNG key of the draw.
        num_features: `m`, the number of random vectors.
        dim: their size `d` (a head's size).

    Returns:
        The vectors, one per row.
    """
    num_blocks = -(-num_features // dim)
    k_blocks, k_norms = jax.random.split(key)

    def orthonormal_rows(block_key):
        q, r = jnp.linalg.qr(jax.random.normal(block_key, (dim, dim)))
        return (q * jnp.sign(jnp.diagonal(r))[None]).T

    rows = jax.vmap(orthonormal_rows)(jax.random.split(k_blocks, num_blocks)).reshape(-1, dim)
    lengths = jnp.linalg.norm(jax.random.normal(k_norms, (num_features, dim)), axis=-1)
    return rows[:num_features] * lengths[:, None]


def positive_random_features(
    x: Float[Array, "heads tokens head_dim"],
    projection: Float[Array, "num_features head_dim"],
    *,
    is_query: bool,
) -> Float[Array, "heads tokens num_features"]:
    """`phi(x) = exp(W x - |x|^2 / 2)` up to a factor that cancels in attention.

    `x` is already scaled by `d^(-1/4)`. The exponent is shifted before `exp` so that
    it cannot overflow: by its maximum over the features of each query (a factor per
    query, which cancels between the numerator and the denominator of that query's
    output), and by its maximum over all keys and features of a head (one factor for
    every key of the head, which cancels too). The shifts carry no gradient: the output
    does not depend on them.
    """
    exponent = jnp.einsum("htd,md->htm", x, projection) - 0.5 * jnp.sum(x * x, axis=-1, keepdims=True)
    axes = -1 if is_query else (-2, -1)
    return jnp.exp(exponent - jax.lax.stop_gradient(jnp.max(exponent, axis=axes, keepdims=True)))


def favor_attention(
    query: Float[Array, "heads q head_dim"],
    key: Float[Array, "heads k head_dim"],
    value: Float[Array, "heads k v_dim"],
    projection: Float[Array, "num_features head_dim"],
) -> Float[Array, "heads q v_dim"]:
    """FAVOR+ estimate of `softmax(query key^T / sqrt(head_dim)) value`, per head.

    Arguments:
        query, key, value: one example's heads (not yet scaled).
        projection: the random features `W` (`orthogonal_gaussian_features`).

    Returns:
        `phi(Q) (phi(K)^T V) / phi(Q) (phi(K)^T 1)`: linear in the number of tokens.
    """
    compute = jnp.promote_types(query.dtype, jnp.float32)  # exp of half-precision exponents is too coarse
    scale = jnp.asarray(query.shape[-1] ** -0.25, compute)
    phi_q = positive_random_features(query.astype(compute) * scale, projection, is_query=True)
    phi_k = positive_random_features(key.astype(compute) * scale, projection, is_query=False)
    key_value = jnp.einsum("hkm,hkd->hmd", phi_k, value.astype(compute))
    numerator = jnp.einsum("hqm,hmd->hqd", phi_q, key_value)
    denominator = jnp.einsum("hqm,hm->hq", phi_q, jnp.sum(phi_k, axis=1))
    tiny = jnp.finfo(compute).tiny  # keeps a query whose every weight underflowed finite
    return (numerator / jnp.maximum(denominator, tiny)[..., None]).astype(value.dtype)


def _heads(linear: eqx.nn.Linear, x: Float[Array, "tokens in"], num_heads: int) -> Array:
    """`x` projected by `linear` and split into heads: `[heads, tokens, head_dim]`."""
    y = x @ linear.weight.T + linear.bias[None]
    return y.reshape(x.shape[0], num_heads, -1).transpose(1, 0, 2)


class PerformerAttention(eqx.Module):
    """Multi-head attention whose softmax kernel is estimated with FAVOR+ random features.

    Its projections are those of an `nn.MultiHeadDotProductAttention`, held as `exact`:
    `performer.exact(x)` is exact softmax attention with the same weights, which FAVOR+
    approximates, better with more features (the error falls as `1/sqrt(num_features)`).
    The random features are drawn from `feature_key`, which is not a parameter: they stay
    fixed in training and evaluation, and all heads share them. The call signature is the
    library attention's, with no mask (FAVOR+ never forms the attention matrix) and no
    attention dropout (nor any weight to drop).

    Arguments:
        dim: size of the query input and of the output.
        num_heads: number of heads; must divide `dim`.
        num_features: `m`, random features per head (the Performer paper's default
            experiments use 256).
        kv_dim: size of the key/value input; defaults to `dim`.
        key: PRNG key for the projections and the random features (keyword only).
    """

    exact: nn.MultiHeadDotProductAttention
    feature_key: PRNGKeyArray
    num_features: int = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        num_features: int = 256,
        kv_dim: int | None = None,
        key: PRNGKeyArray,
    ):
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"`num_features` must be a positive int. Received: {num_features!r}.")
        k_projections, k_features = jax.random.split(key)
        self.exact = nn.MultiHeadDotProductAttention(dim, num_heads, kv_dim=kv_dim, key=k_projections)
        self.feature_key = k_features
        self.num_features = num_features

    def projection(self) -> Float[Array, "num_features head_dim"]:
        """The random features `W` shared by every head."""
        head_dim = self.exact.query.weight.shape[0] // self.exact.num_heads
        return orthogonal_gaussian_features(self.feature_key, self.num_features, head_dim)

    @jaxtyped(typechecker=beartype)
    def __call__(
        self,
        x_q: Float[Array, "q dim"],
        x_kv: Float[Array, "k kv_dim"] | None = None,
        mask: Bool[Array, "q k"] | None = None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "q dim"]:
        """Attends from `x_q` to `x_kv` (to `x_q` itself when `x_kv` is `None`).

        Arguments:
            x_q: query tokens.
            x_kv: key/value tokens; `None` for self-attention.
            mask: must be `None` (FAVOR+ attends to every key).
            key: unused (no attention dropout); accepted so that the layer replaces the
                library attention in a block.

        Returns:
            One output token per query token.
        """
        del key
        if mask is not None:
            raise ValueError(
                "`mask` must be None: FAVOR+ never forms the attention matrix, so it cannot mask it. "
                f"Received: a mask of shape {mask.shape}."
            )
        x_kv = x_q if x_kv is None else x_kv
        heads = self.exact.num_heads
        q = _heads(self.exact.query, x_q, heads)
        k = _heads(self.exact.key, x_kv, heads)
        v = _heads(self.exact.value, x_kv, heads)
        o = favor_attention(q, k, v, jax.lax.stop_gradient(self.projection()))
        o = o.transpose(1, 0, 2).reshape(x_q.shape[0], -1)
        return o @ self.exact.out.weight.T + self.exact.out.bias[None]
