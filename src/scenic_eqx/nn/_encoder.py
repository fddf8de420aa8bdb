"""The pre-LN transformer encoder: blocks of attention and MLP with residuals."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._attention import MultiHeadDotProductAttention, attend
from ._layer_norm import LayerNorm
from ._mlp_block import MlpBlock
from ._remat import check_remat_policy, remat_call
from ._stochastic_depth import StochasticDepth


class EncoderBlock(eqx.Module):
    """One pre-LN transformer block (Vaswani et al. 2017; Dosovitskiy et al. 2021).

    Arguments:
        dim: token size.
        num_heads: attention heads; must divide `dim` unless `head_dim` is given.
        mlp_dim: hidden size of the MLP.
        head_dim: size of each attention head; defaults to `dim / num_heads` (see
            `MultiHeadDotProductAttention`).
        dropout_rate: dropout in the MLP and after attention.
        attention_dropout_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth rate of both residual branches.
        gelu_approximate: tanh-approximate GELU in the MLP (see `MlpBlock`).
        quick_gelu: `x * sigmoid(1.702 x)` in the MLP instead (OpenAI's CLIP).
        layer_norm_eps: epsilon of both layer norms.
        key: PRNG key for initialisation (keyword only).
    """

    norm1: LayerNorm
    attention: MultiHeadDotProductAttention
    norm2: LayerNorm
    mlp: MlpBlock
    dropout: eqx.nn.Dropout
    drop_path: StochasticDepth

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        head_dim: int | None = None,
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        gelu_approximate: bool = False,
        quick_gelu: bool = False,
        layer_norm_eps: float = 1e-6,
        key: PRNGKeyArray,
    ):
        k_attention, k_mlp = jax.random.split(key)
        self.norm1 = LayerNorm(dim, eps=layer_norm_eps)
        self.attention = MultiHeadDotProductAttention(
            dim, num_heads, head_dim=head_dim, dropout_rate=attention_dropout_rate, key=k_attention
        )
        self.norm2 = LayerNorm(dim, eps=layer_norm_eps)
        self.mlp = MlpBlock(
            dim,
            mlp_dim,
            dropout_rate=dropout_rate,
            gelu_approximate=gelu_approximate,
            quick_gelu=quick_gelu,
            key=k_mlp,
        )
        self.dropout = eqx.nn.Dropout(dropout_rate)
        self.drop_path = StochasticDepth(drop_path_rate)

    def __call__(
        self,
        x: Float[Array, "tokens dim"],
        mask: Bool[Array, "tokens tokens"] | None = None,
        *,
        pos: Float[Array, "tokens dim"] | None = None,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "tokens dim"]:
        """`x + drop_path(attention(norm1(x)))`, then `x + drop_path(mlp(norm2(x)))`.

        `pos`, when given, is added to the attention's queries and keys but not to its
        values, at every block, as in DETR's encoder (Carion et al. 2020).
        """
        keys = [None] * 5 if key is None else list(jax.random.split(key, 5))
        h = self.norm1(x)
        if pos is None:
            y = self.attention(h, mask=mask, key=keys[0])
        else:
            q = h + pos.astype(h.dtype)
            y = attend(self.attention, q, q, h, mask, key=keys[0])
        x = x + self.drop_path(self.dropout(y, key=keys[1]), key=keys[2])
        x = x + self.drop_path(self.mlp(self.norm2(x), key=keys[3]), key=keys[4])
        return x


class Encoder(eqx.Module):
    """A stack of `EncoderBlock`s followed by a final `LayerNorm`.

    With `scan_layers=False`, `blocks` is a tuple of blocks; with `scan_layers=True` it
    is one block whose arrays carry a leading `num_layers` axis, run with `lax.scan`
    (faster to compile, same step time). Either way each block gets its own random
    initialisation. Stochastic depth grows linearly with depth, from 0 in the first
    block to `stochastic_depth` in the last, as in Scenic.

    With `remat_policy` set, each block runs under `jax.checkpoint` (in the scan body
    with `scan_layers=True`): the backward pass recomputes the block's activations
    instead of keeping them, trading one more forward pass for memory. On XLA:CPU only
    scanned blocks save memory under the default compiler options (see `_remat`).

    Arguments:
        num_layers: number of blocks.
        dim, num_heads, mlp_dim, head_dim: as in `EncoderBlock`.
        dropout_rate, attention_dropout_rate: as in `EncoderBlock`.
        gelu_approximate, quick_gelu, layer_norm_eps: as in `EncoderBlock`.
        stochastic_depth: stochastic depth rate of the last block.
        scan_layers: stack the blocks' weights and run them with `lax.scan`.
        remat_policy: `None` (no rematerialisation) or a name from
            `REMAT_POLICIES` of `_remat`: `"nothing_saveable"` (keep only each block's
            input: the least memory), `"dots_saveable"`,
            `"dots_with_no_batch_dims_saveable"` or `"everything_saveable"`.
        key: PRNG key for initialisation (keyword only).
    """

    blocks: tuple[EncoderBlock, ...] | EncoderBlock
    norm: LayerNorm
    drop_path_rates: tuple[float, ...] = eqx.field(static=True)
    scan_layers: bool = eqx.field(static=True)
    remat_policy: str | None = eqx.field(static=True)

    def __init__(
        self,
        num_layers: int,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        head_dim: int | None = None,
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        stochastic_depth: float = 0.0,
        gelu_approximate: bool = False,
        quick_gelu: bool = False,
        layer_norm_eps: float = 1e-6,
        scan_layers: bool = False,
        remat_policy: str | None = None,
        key: PRNGKeyArray,
    ):
        if num_layers < 1:
            raise ValueError(f"`num_layers` (={num_layers}) must be at least 1")
        self.remat_policy = check_remat_policy(remat_policy)
        rates = tuple(stochastic_depth * i / max(num_layers - 1, 1) for i in range(num_layers))

        def make_block(rate: float, block_key: PRNGKeyArray) -> EncoderBlock:
            return EncoderBlock(
                dim,
                num_heads,
                mlp_dim,
                head_dim=head_dim,
                dropout_rate=dropout_rate,
                attention_dropout_rate=attention_dropout_rate,
                drop_path_rate=rate,
                gelu_approximate=gelu_approximate,
                quick_gelu=quick_gelu,
                layer_norm_eps=layer_norm_eps,
                key=block_key,
            )

        keys = jax.random.split(key, num_layers)
        if scan_layers:
            # Built with rate 0; `__call__` swaps in each layer's rate while scanning.
            # One compiled program, not one per vmapped random op.
            self.blocks = eqx.filter_jit(eqx.filter_vmap(lambda k: make_block(0.0, k)))(keys)
        else:
            self.blocks = tuple(make_block(r, k) for r, k in zip(rates, keys))
        self.norm = LayerNorm(dim, eps=layer_norm_eps)
        self.drop_path_rates = rates
        self.scan_layers = scan_layers

    def __call__(
        self,
        x: Float[Array, "tokens dim"],
        mask: Bool[Array, "tokens tokens"] | None = None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "tokens dim"]:
        """Runs every block, then the final layer norm."""
        num_layers = len(self.drop_path_rates)
        keys = None if key is None else jax.random.split(key, num_layers)
        if not self.scan_layers:
            for i, block in enumerate(self.blocks):
                block_key = None if keys is None else keys[i]
                x = remat_call(block, x, mask, key=block_key, remat_policy=self.remat_policy)
            return self.norm(x)

        params, static = eqx.partition(self.blocks, eqx.is_array)
        vary_rates = any(self.drop_path_rates)

        def step(h, layer):
            block_params, rate, block_key = layer
            block = eqx.combine(block_params, static)
            if vary_rates:
                block = eqx.tree_at(lambda b: b.drop_path.rate, block, rate)
            # The scan body is a loop: XLA cannot merge the recomputation into the
            # forward pass, so no optimisation barrier is needed (`prevent_cse`).
            h = remat_call(
                block,
                h,
                mask,
                key=block_key,
                remat_policy=self.remat_policy,
                prevent_cse=False,
            )
            return h, None

        rates = jnp.asarray(self.drop_path_rates, jnp.float32)  # not the compute dtype: exact rates
        x, _ = jax.lax.scan(step, x, (params, rates, keys))
        return self.norm(x)
