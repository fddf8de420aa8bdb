"""Multi-head dot-product attention (Vaswani et al. 2017) for one example."""

import math
import numbers

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._linear import dense, linear
from ._statistics_dtype import statistics_dtype


@jax.custom_vjp
def dot_product_attention_core(
    query: Float[Array, "heads q head_dim"],
    key: Float[Array, "heads k head_dim"],
    value: Float[Array, "heads k v_dim"],
    mask: Bool[Array, "#heads q k"] | None,
    keep: Float[Array, "heads q k"] | None,
) -> Float[Array, "heads q v_dim"]:
    """`softmax(query key^T) value` per head, with a hand-written backward pass.

    On CPU, this `[heads, tokens, head_dim]` layout with a backward pass that reuses the
    saved softmax probabilities is faster than `jax.nn.dot_product_attention` (see
    docs/performance.md, "Attention"). The core holds no weights, so it stays cheap under
    `vmap`.

    Half-precision inputs (bfloat16, float16) get float32 logits, softmax and softmax
    backward, as in Flax and Keras mixed precision: a bfloat16 logit of 300 is only
    known to within 1, which changes its weight by a factor of up to e, and float16
    logits overflow past 65504. The probabilities are rounded to the input's dtype for
    the products with the values, and saved in float32 for the backward pass: on a
    confident row (one probability near 1) the softmax backward is a small difference
    of nearly equal terms, lost if that probability were rounded to 2**-9. Float32
    inputs are computed as before, with no casts.

    Arguments:
        query: queries, already scaled by `1/sqrt(head_dim)`.
        key: keys.
        value: values.
        mask: `True` where a query may attend to a key; `None` for no mask.
        keep: dropout multipliers for the attention weights (0 or `1/(1-rate)`);
            `None` for no dropout.

    Returns:
        The attended values.
    """
    return _core_fwd(query, key, value, mask, keep)[0]


def _core_fwd(query, key, value, mask, keep):
    # Float32 logits for half-precision inputs (float32 and float64 stay as they are):
    # the products accumulate in float32 anyway, this keeps their result unrounded.
    compute = statistics_dtype(query.dtype)
    logits = jnp.einsum("hqd,hkd->hqk", query, key, preferred_element_type=compute)
    if mask is not None:
        # A finite fill keeps fully masked rows finite (uniform weights), as in Flax.
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    probs = jax.nn.softmax(logits, axis=-1)
    weights = probs if keep is None else probs * keep.astype(probs.dtype)
    out = jnp.einsum("hqk,hkd->hqd", weights.astype(value.dtype), value)
    return out, (query, key, value, mask, keep, probs)


def _core_bwd(residuals, grad):
    query, key, value, mask, keep, probs = residuals
    weights = probs if keep is None else probs * keep.astype(probs.dtype)
    d_value = jnp.einsum("hqk,hqd->hkd", weights.astype(value.dtype), grad)
    d_probs = jnp.einsum("hqd,hkd->hqk", grad, value, preferred_element_type=probs.dtype)
    if keep is not None:
        d_probs = d_probs * keep.astype(d_probs.dtype)
    # Softmax backward: probs * (d_probs - <d_probs, probs>) along the key axis.
    d_logits = probs * (d_probs - jnp.sum(d_probs * probs, axis=-1, keepdims=True))
    if mask is not None:
        d_logits = jnp.where(mask, d_logits, 0)
    d_logits = d_logits.astype(query.dtype)
    d_query = jnp.einsum("hqk,hkd->hqd", d_logits, key)
    d_key = jnp.einsum("hqk,hqd->hkd", d_logits, query)
    return d_query, d_key, d_value, None, None


dot_product_attention_core.defvjp(_core_fwd, _core_bwd)


def attention_width(dim: int, num_heads: int, head_dim: int | None = None, *, dim_name: str = "dim") -> int:
    """`num_heads * head_dim`, the width of the queries, keys and values of all heads.

    Raises unless `num_heads` (and `head_dim`, when given) are positive integers, and,
    without `head_dim`, `num_heads` divides `dim` (`dim_name` names it in the message).
    """
    for name, value in (("num_heads", num_heads), ("head_dim", head_dim)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1
        ):
            raise ValueError(f"`{name}` must be a positive integer. Received: {value!r}.")
    if head_dim is not None:
        return num_heads * head_dim
    if dim % num_heads:
        raise ValueError(
            f"`{dim_name}` (={dim}) must be divisible by `num_heads` (={num_heads}), or give `head_dim` "
            f"(the size of each head) for an attention width `num_heads * head_dim` other than `{dim_name}`"
        )
    return dim


def _xavier_linear(in_features: int, out_features: int, *, key: PRNGKeyArray) -> eqx.nn.Linear:
    """A Linear layer with Xavier-uniform weights and zero bias, as in Google's ViT."""
    weight = jax.nn.initializers.xavier_uniform()(key, (out_features, in_features))
    return linear(weight, jnp.zeros(out_features))


class MultiHeadDotProductAttention(eqx.Module):
    """Multi-head dot-product attention, self or cross (Vaswani et al. 2017).

    `query`, `key`, `value` and `out` are separate `eqx.nn.Linear` layers (weight
    `[out_features, in_features]`, as in PyTorch); head `h` of the query uses rows
    `h * head_dim : (h + 1) * head_dim` of `query.weight`.

    The attention width, `num_heads * head_dim`, is `dim` by default (`head_dim = dim
    / num_heads`, which must then be whole, as Flax's `qkv_features` requires). An
    explicit `head_dim` decouples it from `dim`, as timm's `head_dim` and big_vision's
    `qkv_features` do: the query, key and value project to `num_heads * head_dim` and
    `out` back to `dim`. Scenic's `enforce_hidden_size_divisible_by_heads=False`
    (heads of `dim // num_heads`) is `head_dim=dim // num_heads`.

    Arguments:
        dim: size of the query input (and of the output).
        num_heads: number of heads; must divide `dim` unless `head_dim` is given.
        kv_dim: size of the key/value input; defaults to `dim`.
        head_dim: size of each head; defaults to `dim / num_heads`.
        dropout_rate: dropout on the attention weights during training.
        key: PRNG key for initialisation (keyword only).
    """

    query: eqx.nn.Linear
    key: eqx.nn.Linear
    value: eqx.nn.Linear
    out: eqx.nn.Linear
    num_heads: int = eqx.field(static=True)
    dropout_rate: float = eqx.field(static=True)
    inference: bool

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        kv_dim: int | None = None,
        head_dim: int | None = None,
        dropout_rate: float = 0.0,
        key: PRNGKeyArray,
    ):
        width = attention_width(dim, num_heads, head_dim)
        kv_dim = dim if kv_dim is None else kv_dim
        kq, kk, kv, ko = jax.random.split(key, 4)
        self.query = _xavier_linear(dim, width, key=kq)
        self.key = _xavier_linear(kv_dim, width, key=kk)
        self.value = _xavier_linear(kv_dim, width, key=kv)
        self.out = _xavier_linear(width, dim, key=ko)
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate
        self.inference = False

    def _heads(self, linear: eqx.nn.Linear, x: Float[Array, "tokens in"]) -> Array:
        """Projects `x` and splits it into heads: `[heads, tokens, head_dim]`."""
        y = dense(linear, x)
        return y.reshape(x.shape[0], self.num_heads, -1).transpose(1, 0, 2)

    def __call__(
        self,
        x_q: Float[Array, "q dim"],
        x_kv: Float[Array, "k kv_dim"] | None = None,
        mask: Bool[Array, "q k"] | Bool[Array, "#heads q k"] | None = None,
        *,
        x_v: Float[Array, "k kv_dim"] | None = None,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "q dim"]:
        """Attends from `x_q` to `x_kv` (to `x_q` itself when `x_kv` is `None`).

        Arguments:
            x_q: query tokens.
            x_kv: key/value tokens; `None` for self-attention.
            mask: `True` where a query may attend to a key, `[q, k]` or `[heads, q, k]`.
            x_v: tokens projected to the values, one per key, when they differ from
                those projected to the keys (`x_kv`); see `attend`.
            key: PRNG key for attention dropout; only needed when it is active.

        Returns:
            One output token per query token.
        """
        x_kv = x_q if x_kv is None else x_kv
        q = self._heads(self.query, x_q)
        k = self._heads(self.key, x_kv)
        v = self._heads(self.value, x_kv if x_v is None else x_v)
        q = q * jnp.asarray(1 / math.sqrt(q.shape[-1]), q.dtype)
        if mask is not None and mask.ndim == 2:
            mask = mask[None]
        keep = None
        if self.dropout_rate > 0 and not self.inference:
            if key is None:
                raise ValueError(
                    "`key` is required for attention dropout in training; pass a key "
                    "or switch to inference with `eqx.nn.inference_mode(model)`"
                )
            shape = (q.shape[0], q.shape[1], k.shape[1])
            kept = jax.random.bernoulli(key, 1 - self.dropout_rate, shape)
            keep = kept.astype(q.dtype) / (1 - self.dropout_rate)
        if _use_cudnn(q, mask, keep):
            o = jax.nn.dot_product_attention(
                q.transpose(1, 0, 2),
                k.transpose(1, 0, 2),
                v.transpose(1, 0, 2),
                scale=1.0,
                implementation="cudnn",
            ).transpose(1, 0, 2)
        else:
            o = dot_product_attention_core(q, k, v, mask, keep)
        return dense(self.out, o.transpose(1, 0, 2).reshape(x_q.shape[0], -1))


def _use_cudnn(q: Array, mask: Array | None, keep: Array | None) -> bool:
    """Whether cuDNN's fused attention applies: a GPU, half precision, no mask or dropout."""
    return (
        jax.default_backend() == "gpu"
        and q.dtype in (jnp.float16, jnp.bfloat16)
        and q.shape[-1] % 8 == 0
        and q.shape[-1] <= 128
        and mask is None
        and keep is None
    )


def attend(
    attention: MultiHeadDotProductAttention,
    x_q: Float[Array, "q dim"],
    x_k: Float[Array, "k kv_dim"],
    x_v: Float[Array, "k kv_dim"],
    mask: Bool[Array, "q k"] | None = None,
    *,
    key: PRNGKeyArray | None = None,
) -> Float[Array, "q dim"]:
    """`attention` with separate inputs for its keys and its values.

    DETR (Carion et al. 2020) adds position embeddings to the queries and keys but not
    to the values: this projects `x_k` to the keys and `x_v` to the values with the
    module's own weights (its `x_v` argument).

    Arguments:
        attention: the attention layer whose weights are used.
        x_q: query tokens.
        x_k: tokens projected to keys.
        x_v: tokens projected to values, one per key.
        mask: `True` where a query may attend to a key; `None` for no mask.
        key: PRNG key for attention dropout; only needed when it is active.

    Returns:
        One output token per query token.
    """
    return attention(x_q, x_k, mask, x_v=x_v, key=key)
