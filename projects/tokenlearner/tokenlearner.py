"""TokenLearner and TokenFuser (Ryoo et al., "TokenLearner: Adaptive Space-Time Tokenization
for Videos", NeurIPS 2021, arXiv:2106.11297).

TokenLearner turns the `N` tokens of one example into `S` learned tokens: a small MLP
on the layer-normalised tokens gives `S` spatial attention maps over the `N` tokens, and
each learned token is the attention-weighted sum of the input tokens (the paper's
eq. 1, `z_i = A_i(x) = rho(x . alpha_i(x))`, with the pooling `rho` a sum). This is
version 1.1 of the module, the one of the paper's final version and of Scenic's
project: an MLP (`LayerNorm -> Linear -> GELU -> Linear`) rather than the first
version's stack of convolutions, and a softmax over the tokens rather than a sigmoid.

TokenFuser (the paper's Section 3.2) maps the `S` tokens that a transformer block
processed back to `N` tokens: it mixes the `S` tokens with a learned `S x S` map, then
gives each of the `N` original tokens a sigmoid gating over the mixed tokens, computed
from that original token alone.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from beartype import beartype
from jaxtyping import Array, Float, PRNGKeyArray, jaxtyped

from scenic_eqx import nn

_NORMALIZATIONS = ("softmax", "sigmoid")


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {value!r}.")


class TokenMlp(eqx.Module):
    """`LayerNorm -> Linear -> GELU -> Dropout -> Linear`: one score per output for each token.

    The spatial-attention MLP of TokenLearner v1.1 and the gating MLP of TokenFuser.

    Arguments:
        dim: size of each input token.
        bottleneck_dim: hidden size of the MLP.
        num_outputs: scores per token (`S`, the number of learned tokens).
        dropout_rate: dropout after the GELU.
        layer_norm_eps: epsilon of the layer norm.
        key: PRNG key for initialisation (keyword only).
    """

    norm: nn.LayerNorm
    dense1: eqx.nn.Linear
    dense2: eqx.nn.Linear
    dropout: eqx.nn.Dropout

    def __init__(
        self,
        dim: int,
        bottleneck_dim: int,
        num_outputs: int,
        *,
        dropout_rate: float = 0.0,
        layer_norm_eps: float = 1e-6,
        key: PRNGKeyArray,
    ):
        k1, k2 = jax.random.split(key)
        self.norm = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.dense1 = eqx.nn.Linear(dim, bottleneck_dim, key=k1)
        self.dense2 = eqx.nn.Linear(bottleneck_dim, num_outputs, key=k2)
        self.dropout = eqx.nn.Dropout(dropout_rate)

    @jaxtyped(typechecker=beartype)
    def __call__(
        self, x: Float[Array, "tokens dim"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "tokens num_outputs"]:
        """The scores `[tokens, num_outputs]` of each token, computed from that token alone."""
        h = nn.gelu(jax.vmap(self.dense1)(self.norm(x)))
        return jax.vmap(self.dense2)(self.dropout(h, key=key))


class TokenLearner(eqx.Module):
    """Learns `S` tokens from `N`: `y = softmax_N(MLP(LayerNorm(x))^T) @ x` (v1.1).

    Each learned token `y_s = sum_n a_sn x_n` is a convex combination of the input
    tokens (`a_sn >= 0`, `sum_n a_sn = 1`). With `normalization="sigmoid"` the weights
    are `a_sn = sigmoid(MLP(LayerNorm(x))_ns)` instead, each in `(0, 1)` and not summing
    to one (the first version's weighting, with sum pooling).

    Ryoo et al., "TokenLearner: Adaptive Space-Time Tokenization for Videos", NeurIPS
    2021 (arXiv:2106.11297), Section 3.1.

    Arguments:
        dim: size of each token.
        num_learned_tokens: `S`, the number of tokens learned.
        bottleneck_dim: hidden size of the attention MLP (64 in the paper's code).
        normalization: `"softmax"` over the `N` tokens (v1.1) or `"sigmoid"`.
        dropout_rate: dropout inside the attention MLP.
        layer_norm_eps: epsilon of the layer norm.
        key: PRNG key for initialisation (keyword only).
    """

    attention_mlp: TokenMlp
    normalization: str = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        num_learned_tokens: int,
        *,
        bottleneck_dim: int = 64,
        normalization: str = "softmax",
        dropout_rate: float = 0.0,
        layer_norm_eps: float = 1e-6,
        key: PRNGKeyArray,
    ):
        _check_positive("num_learned_tokens", num_learned_tokens)
        _check_positive("bottleneck_dim", bottleneck_dim)
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"`normalization` must be one of {_NORMALIZATIONS}. Received: {normalization!r}."
            )
        self.attention_mlp = TokenMlp(
            dim,
            bottleneck_dim,
            num_learned_tokens,
            dropout_rate=dropout_rate,
            layer_norm_eps=layer_norm_eps,
            key=key,
        )
        self.normalization = normalization

    @jaxtyped(typechecker=beartype)
    def attention_maps(
        self, x: Float[Array, "tokens dim"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "num_learned tokens"]:
        """The `S` spatial attention maps `a` over the `N` input tokens, `[S, N]`."""
        logits = self.attention_mlp(x, key=key).T
        if self.normalization == "softmax":
            return jax.nn.softmax(logits, axis=-1)
        return jax.nn.sigmoid(logits)

    @jaxtyped(typechecker=beartype)
    def __call__(
        self, x: Float[Array, "tokens dim"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "num_learned dim"]:
        """The `S` learned tokens `[S, dim]`: `attention_maps(x) @ x`."""
        return self.attention_maps(x, key=key) @ x


class TokenFuser(eqx.Module):
    """Maps `S` processed tokens back to `N`: `out_n = sigmoid(MLP(LayerNorm(x_n))) @ mix(y)`.

    `mix(y) = LayerNorm(W_mix @ LayerNorm(y) + b)` mixes the `S` processed tokens
    along the token axis (`W_mix` is `S x S`, initialised to zero as in the paper's
    code, so the fuser first outputs zeros and a residual around it starts as the
    identity); each original token `x_n` then gates the mixed tokens with `S` sigmoid
    weights computed from `x_n` alone. The caller adds the original tokens back
    (`x + fuser(y, x)`).

    Ryoo et al., "TokenLearner: Adaptive Space-Time Tokenization for Videos", NeurIPS
    2021 (arXiv:2106.11297), Section 3.2.

    Arguments:
        dim: size of each token.
        num_learned_tokens: `S`, the number of processed tokens.
        bottleneck_dim: hidden size of the gating MLP.
        dropout_rate: dropout inside the gating MLP and on the output.
        layer_norm_eps: epsilon of the layer norms.
        key: PRNG key for initialisation (keyword only).
    """

    mix_norm_in: nn.LayerNorm
    mix_weight: Float[Array, "num_learned num_learned"]
    mix_bias: Float[Array, " num_learned"]
    mix_norm_out: nn.LayerNorm
    gating_mlp: TokenMlp
    dropout: eqx.nn.Dropout

    def __init__(
        self,
        dim: int,
        num_learned_tokens: int,
        *,
        bottleneck_dim: int = 64,
        dropout_rate: float = 0.0,
        layer_norm_eps: float = 1e-6,
        key: PRNGKeyArray,
    ):
        _check_positive("num_learned_tokens", num_learned_tokens)
        _check_positive("bottleneck_dim", bottleneck_dim)
        self.mix_norm_in = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.mix_weight = jnp.zeros((num_learned_tokens, num_learned_tokens))
        self.mix_bias = jnp.zeros((num_learned_tokens,))
        self.mix_norm_out = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.gating_mlp = TokenMlp(
            dim,
            bottleneck_dim,
            num_learned_tokens,
            dropout_rate=dropout_rate,
            layer_norm_eps=layer_norm_eps,
            key=key,
        )
        self.dropout = eqx.nn.Dropout(dropout_rate)

    @jaxtyped(typechecker=beartype)
    def __call__(
        self,
        learned: Float[Array, "num_learned dim"],
        original: Float[Array, "tokens dim"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "tokens dim"]:
        """`N` tokens `[N, dim]` from the `S` processed ones and the `N` original ones."""
        k_gating, k_out = (None, None) if key is None else jax.random.split(key)
        mixed = self.mix_weight @ self.mix_norm_in(learned) + self.mix_bias[:, None]
        mixed = self.mix_norm_out(mixed)
        gates = jax.nn.sigmoid(self.gating_mlp(original, key=k_gating))
        return self.dropout(gates @ mixed, key=k_out)
