"""The pre-LN transformer decoder: self-attention, cross-attention to a memory, MLP."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._attention import MultiHeadDotProductAttention, attend
from ._layer_norm import LayerNorm
from ._mlp_block import MlpBlock


def _plus(x: Array, position: Array | None) -> Array:
    return x if position is None else x + position.astype(x.dtype)


class DecoderBlock(eqx.Module):
    """One pre-LN transformer decoder block (Vaswani et al. 2017; Carion et al. 2020).

    Three residual branches: self-attention among the queries, cross-attention from the
    queries to a memory (the encoder's output), and an MLP. Optional position
    embeddings are added, as in DETR, to the inputs of the queries and keys of both
    attentions, never to their values.

    Arguments:
        dim: token size.
        num_heads: attention heads; must divide `dim`.
        mlp_dim: hidden size of the MLP.
        memory_dim: token size of the memory; defaults to `dim`.
        dropout_rate: dropout in the MLP and after each attention.
        attention_dropout_rate: dropout on the attention weights.
        gelu_approximate: tanh-approximate GELU in the MLP (see `MlpBlock`).
        layer_norm_eps: epsilon of the three layer norms.
        key: PRNG key for initialisation (keyword only).
    """

    norm1: LayerNorm
    self_attention: MultiHeadDotProductAttention
    norm2: LayerNorm
    cross_attention: MultiHeadDotProductAttention
    norm3: LayerNorm
    mlp: MlpBlock
    dropout: eqx.nn.Dropout

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        memory_dim: int | None = None,
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        gelu_approximate: bool = False,
        layer_norm_eps: float = 1e-6,
        key: PRNGKeyArray,
    ):
        k_self, k_cross, k_mlp = jax.random.split(key, 3)
        rate = attention_dropout_rate
        self.norm1 = LayerNorm(dim, eps=layer_norm_eps)
        self.self_attention = MultiHeadDotProductAttention(dim, num_heads, dropout_rate=rate, key=k_self)
        self.norm2 = LayerNorm(dim, eps=layer_norm_eps)
        self.cross_attention = MultiHeadDotProductAttention(
            dim, num_heads, kv_dim=memory_dim, dropout_rate=rate, key=k_cross
        )
        self.norm3 = LayerNorm(dim, eps=layer_norm_eps)
        self.mlp = MlpBlock(
            dim,
            mlp_dim,
            dropout_rate=dropout_rate,
            gelu_approximate=gelu_approximate,
            key=k_mlp,
        )
        self.dropout = eqx.nn.Dropout(dropout_rate)

    def __call__(
        self,
        x: Float[Array, "targets dim"],
        memory: Float[Array, "memory memory_dim"],
        *,
        self_mask: Bool[Array, "targets targets"] | None = None,
        memory_mask: Bool[Array, "targets memory"] | None = None,
        query_pos: Float[Array, "targets dim"] | None = None,
        memory_pos: Float[Array, "memory memory_dim"] | None = None,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "targets dim"]:
        """The three residual branches; masks are `True` where attending is allowed.

        `h = norm1(x)`, `x += self_attention(q=k=h + query_pos, v=h)`;
        `h = norm2(x)`, `x += cross_attention(q=h + query_pos, k=memory + memory_pos,
        v=memory)`; `x += mlp(norm3(x))`.
        """
        keys = [None] * 5 if key is None else list(jax.random.split(key, 5))
        h = self.norm1(x)
        q = _plus(h, query_pos)
        y = attend(self.self_attention, q, q, h, self_mask, key=keys[0])
        x = x + self.dropout(y, key=keys[1])
        h = self.norm2(x)
        y = attend(
            self.cross_attention,
            _plus(h, query_pos),
            _plus(memory, memory_pos),
            memory,
            memory_mask,
            key=keys[2],
        )
        x = x + self.dropout(y, key=keys[3])
        return x + self.mlp(self.norm3(x), key=keys[4])


class Decoder(eqx.Module):
    """A stack of `DecoderBlock`s with a shared final `LayerNorm`.

    Used with `causal=True` as the decoder of a sequence-to-sequence transformer
    (Vaswani et al. 2017), and with learned object queries as `query_pos` and image
    positions as `memory_pos` as DETR's decoder (Carion et al. 2020), whose auxiliary
    losses read every block's output through `intermediates`.

    Arguments:
        num_layers: number of blocks.
        dim, num_heads, mlp_dim, memory_dim: as in `DecoderBlock`.
        dropout_rate, attention_dropout_rate: as in `DecoderBlock`.
        gelu_approximate, layer_norm_eps: as in `DecoderBlock`.
        key: PRNG key for initialisation (keyword only).
    """

    blocks: tuple[DecoderBlock, ...]
    norm: LayerNorm

    def __init__(
        self,
        num_layers: int,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        memory_dim: int | None = None,
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        gelu_approximate: bool = False,
        layer_norm_eps: float = 1e-6,
        key: PRNGKeyArray,
    ):
        if num_layers < 1:
            raise ValueError(f"`num_layers` (={num_layers}) must be at least 1")
        self.blocks = tuple(
            DecoderBlock(
                dim,
                num_heads,
                mlp_dim,
                memory_dim=memory_dim,
                dropout_rate=dropout_rate,
                attention_dropout_rate=attention_dropout_rate,
                gelu_approximate=gelu_approximate,
                layer_norm_eps=layer_norm_eps,
                key=block_key,
            )
            for block_key in jax.random.split(key, num_layers)
        )
        self.norm = LayerNorm(dim, eps=layer_norm_eps)

    def intermediates(
        self,
        x: Float[Array, "targets dim"],
        memory: Float[Array, "memory memory_dim"],
        *,
        causal: bool = False,
        self_mask: Bool[Array, "targets targets"] | None = None,
        memory_mask: Bool[Array, " memory"] | Bool[Array, "targets memory"] | None = None,
        query_pos: Float[Array, "targets dim"] | None = None,
        memory_pos: Float[Array, "memory memory_dim"] | None = None,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "layers targets dim"]:
        """Every block's output, each through the final norm (the last is `__call__`'s).

        Arguments:
            x: the decoder's input tokens (DETR: zeros).
            memory: the tokens to cross-attend to (the encoder's output).
            causal: whether token `i` may only attend to tokens `0..i` in
                self-attention (autoregressive decoding).
            self_mask: `True` where token `i` may attend to token `j`; combined with
                `causal` when both are given.
            memory_mask: `True` for memory tokens that may be attended to (`[memory]`,
                e.g. not padding), or per target token (`[targets, memory]`).
            query_pos: added to the queries and keys of both attentions (DETR's
                object queries).
            memory_pos: added to the memory's keys in cross-attention.
            key: PRNG key for dropout; only needed when it is active.

        Returns:
            A float array `[num_layers, targets, dim]`.
        """
        num_targets = x.shape[0]
        if causal:
            tril = jnp.tril(jnp.ones((num_targets, num_targets), bool))
            self_mask = tril if self_mask is None else self_mask & tril
        if memory_mask is not None and memory_mask.ndim == 1:
            memory_mask = jnp.broadcast_to(memory_mask[None], (num_targets, memory.shape[0]))
        keys = [None] * len(self.blocks) if key is None else jax.random.split(key, len(self.blocks))
        outputs = []
        for block, block_key in zip(self.blocks, keys):
            x = block(
                x,
                memory,
                self_mask=self_mask,
                memory_mask=memory_mask,
                query_pos=query_pos,
                memory_pos=memory_pos,
                key=block_key,
            )
            outputs.append(self.norm(x))
        return jnp.stack(outputs)

    def __call__(
        self,
        x: Float[Array, "targets dim"],
        memory: Float[Array, "memory memory_dim"],
        *,
        causal: bool = False,
        self_mask: Bool[Array, "targets targets"] | None = None,
        memory_mask: Bool[Array, " memory"] | Bool[Array, "targets memory"] | None = None,
        query_pos: Float[Array, "targets dim"] | None = None,
        memory_pos: Float[Array, "memory memory_dim"] | None = None,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "targets dim"]:
        """Runs every block, then the final norm; arguments as in `intermediates`."""
        # The norms of the earlier blocks' outputs are unused: XLA removes them.
        return self.intermediates(
            x,
            memory,
            causal=causal,
            self_mask=self_mask,
            memory_mask=memory_mask,
            query_pos=query_pos,
            memory_pos=memory_pos,
            key=key,
        )[-1]
