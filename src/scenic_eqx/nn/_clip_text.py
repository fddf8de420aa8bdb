"""CLIP's text tower: a causal pre-LN transformer pooled at the end-of-text token.

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision" (arXiv:2103.00020), section 2.4: a GPT-2-style transformer over byte-pair
tokens "bracketed with [SOS] and [EOS] tokens", with masked (causal) self-attention; "the
activations of the highest layer of the transformer at the [EOS] token are treated as the
feature representation of the text", layer-normalised and linearly projected.

Module tree (Linear weights `[out_features, in_features]`, as in PyTorch):

```
CLIPTextTransformer
├── token_embedding: Embedding     .weight [vocab_size, width]
├── pos_embedding                  .weight [context_length, width]
├── encoder: Encoder               causal blocks; its final `norm` is OpenAI's `ln_final`
└── projection: Linear             [embed_dim, width], no bias
```
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._encoder import Encoder
from ._linear import linear
from ._position_embedding import LearnedPositionEmbedding


def check_tokens(tokens: object, *, context_length: int, name: str = "tokens") -> None:
    """Raises unless `tokens` is one integer sequence of at most `context_length` ids."""
    shape, dtype = getattr(tokens, "shape", None), getattr(tokens, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(
            f"`{name}` (the input of CLIPTextTransformer) must be an integer array of shape "
            f"(context,). Received: {type(tokens).__name__}."
        )
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"`{name}` (the input of CLIPTextTransformer) must hold integer token ids. "
            f"Received: dtype {dtype}."
        )
    if len(shape) != 1 or not 1 <= shape[0] <= context_length:
        hint = " It takes one example: batch it with `jax.vmap`." if len(shape) == 2 else ""
        raise ValueError(
            f"`{name}` (the input of CLIPTextTransformer) must have shape (context,) with "
            f"1 <= context <= `context_length` (={context_length}).{hint} Received: shape {tuple(shape)}."
        )


class CLIPTextTransformer(eqx.Module):
    """The text encoder of CLIP (Radford et al. 2021): token ids to one embedding.

    Token and learned position embeddings, pre-LN transformer blocks under a causal mask
    (a token attends to itself and the tokens before it) and a final layer norm; the
    output at the end-of-text token is projected to `embed_dim`. The embedding is not
    normalised. Positions after the end-of-text token (padding) cannot change it.

    Where the end-of-text token is:

    - `eos_token_id=None` (OpenAI, open_clip): the position of the largest id in the
      sequence, since `<|endoftext|>` is the last entry of CLIP's vocabulary.
    - `eos_token_id=k` (transformers, whose configs since 2023 give the id): the first
      position holding `k`. A sequence without `k` is pooled at position 0.

    The two agree on CLIP's own tokenizer output.

    Arguments:
        embed_dim: size of the output embedding (the joint image-text space).
        vocab_size: number of token ids; an id outside `[0, vocab_size)` gives a NaN
            embedding rather than a wrong one.
        context_length: the most tokens a sequence may have (77 in CLIP).
        width: size of each token; divisible by `num_heads`.
        num_layers: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_dim: hidden size of each block's MLP; `4 * width` when `None`, as in CLIP.
        eos_token_id: the end-of-text id to pool at, or `None` for the largest id.
        quick_gelu: `x * sigmoid(1.702 x)` in the MLPs (OpenAI's models) instead of the
            exact GELU.
        layer_norm_eps: epsilon of every layer norm (1e-5 in the released models).
        scan_layers, remat_policy: as in `Encoder`.
        key: PRNG key for initialisation (keyword only).
    """

    token_embedding: eqx.nn.Embedding
    pos_embedding: LearnedPositionEmbedding
    encoder: Encoder
    projection: eqx.nn.Linear
    eos_token_id: int | None = eqx.field(static=True)

    def __init__(
        self,
        *,
        embed_dim: int,
        vocab_size: int,
        context_length: int,
        width: int,
        num_layers: int,
        num_heads: int,
        mlp_dim: int | None = None,
        eos_token_id: int | None = None,
        quick_gelu: bool = True,
        layer_norm_eps: float = 1e-5,
        scan_layers: bool = False,
        remat_policy: str | None = None,
        key: PRNGKeyArray,
    ):
        if width % num_heads:
            raise ValueError(
                f"`width` (={width}) must be divisible by `num_heads` (={num_heads}). "
                f"Received: width={width}, num_heads={num_heads}."
            )
        if eos_token_id is not None and not 0 <= eos_token_id < vocab_size:
            raise ValueError(
                f"`eos_token_id` must be None or an id in [0, `vocab_size` (={vocab_size})). "
                f"Received: {eos_token_id!r}."
            )
        k_tokens, k_pos, k_encoder, k_proj = jax.random.split(key, 4)
        # OpenAI's initialisation: token embeddings with std 0.02, projection width**-0.5.
        self.token_embedding = eqx.nn.Embedding(
            weight=0.02 * jax.random.normal(k_tokens, (vocab_size, width))
        )
        self.pos_embedding = LearnedPositionEmbedding(context_length, width, key=k_pos)
        self.encoder = Encoder(
            num_layers,
            width,
            num_heads,
            4 * width if mlp_dim is None else mlp_dim,
            quick_gelu=quick_gelu,
            layer_norm_eps=layer_norm_eps,
            scan_layers=scan_layers,
            remat_policy=remat_policy,
            key=k_encoder,
        )
        self.projection = linear(width**-0.5 * jax.random.normal(k_proj, (embed_dim, width)), None)
        self.eos_token_id = eos_token_id

    def end_of_text(self, tokens: Int[Array, " context"]) -> Int[Array, ""]:
        """The position whose output is the text's feature (see the class docstring)."""
        if self.eos_token_id is None:
            return jnp.argmax(tokens)
        return jnp.argmax(tokens == self.eos_token_id)  # the first True

    def __call__(
        self, tokens: Int[Array, " context"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " embed_dim"]:
        """The (unnormalised) embedding of one token sequence; `key` is unused (no dropout)."""
        del key
        table = self.token_embedding.weight
        vocab_size, context_length = table.shape[0], self.pos_embedding.weight.shape[0]
        check_tokens(tokens, context_length=context_length)
        length = tokens.shape[0]
        # An out-of-range id indexes one past the table and is filled with NaN.
        valid = (tokens >= 0) & (tokens < vocab_size)
        h = jnp.take(table, jnp.where(valid, tokens, vocab_size), axis=0, mode="fill", fill_value=jnp.nan)
        h = h + self.pos_embedding.weight[:length].astype(h.dtype)
        causal = jnp.tril(jnp.ones((length, length), dtype=bool))
        h = self.encoder(h, causal)
        return self.projection(h[self.end_of_text(tokens)])
