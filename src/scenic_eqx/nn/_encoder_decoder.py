"""A transformer encoder-decoder for sequences of tokens (Vaswani et al. 2017).

Module tree (parameter paths; Linear weights are `[out_features, in_features]`):

```
TransformerEncoderDecoder
├── source_embedding: Embedding      .weight [source_vocab_size, hidden]
├── target_embedding: Embedding      .weight [num_classes, hidden]
├── source_posemb, target_posemb     [max_len, hidden] (posemb="learn"), else None: fixed
│                                    sine-cosine (`posemb_sincos_1d`)
├── encoder: Encoder                 pre-LN blocks and a final LayerNorm
├── decoder: Decoder                 pre-LN blocks (causal self-attention, cross-attention
│                                    to the encoder's output, MLP), a final LayerNorm
└── head: Linear                     [num_classes, hidden]
```

The blocks are pre-LN (Xiong et al. 2020) rather than the paper's post-LN, as in
Scenic's and most current transformers: they train without a learning-rate warmup.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._decoder import Decoder
from ._encoder import Encoder
from ._linear import dense
from ._position_embedding import posemb_sincos_1d

TRANSFORMER_VARIANTS: dict[str, dict[str, int]] = {
    # Vaswani et al. 2017, Table 3: d_model, N, h, d_ff of the base and big models.
    "base": dict(hidden_size=512, num_layers=6, num_heads=8, mlp_dim=2048),
    "big": dict(hidden_size=1024, num_layers=6, num_heads=16, mlp_dim=4096),
}
"""Transformer encoder-decoder sizes by name."""

_POSEMBS = ("sincos", "learn")


class TransformerEncoderDecoder(eqx.Module):
    """A pre-LN transformer encoder-decoder, trained with teacher forcing.

    One example is `{"source": [source_len], "target_in": [target_len]}` of token ids:
    `target_in` is the target shifted right behind a start token (`[bos, y_0, ...,
    y_{n-2}]`), and the output at position `i` predicts `y_i`. Source tokens equal to
    `pad_id` are masked out of every attention; the decoder's self-attention is causal,
    so a target padded at its end needs no mask.

    Arguments:
        num_classes: size of the target vocabulary: the number of logits per token.
        hidden_size: size of each token; divisible by `num_heads`.
        num_layers: number of encoder blocks and of decoder blocks.
        num_heads: attention heads per block.
        mlp_dim: hidden size of each block's MLP.
        max_len: the longest source or target sequence.
        source_vocab_size: size of the source vocabulary; defaults to `num_classes`.
        posemb: `"sincos"` (fixed, as in the paper) or `"learn"` (learned).
        dropout_rate: dropout after the embeddings and inside the blocks.
        attention_dropout_rate: dropout on the attention weights.
        pad_id: the padding token id of the source.
        key: PRNG key for initialisation (keyword only).
    """

    source_embedding: eqx.nn.Embedding
    target_embedding: eqx.nn.Embedding
    source_posemb: Float[Array, "max_len dim"] | None
    target_posemb: Float[Array, "max_len dim"] | None
    dropout: eqx.nn.Dropout
    encoder: Encoder
    decoder: Decoder
    head: eqx.nn.Linear
    max_len: int = eqx.field(static=True)
    pad_id: int = eqx.field(static=True)

    def __init__(
        self,
        num_classes: int,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        mlp_dim: int,
        max_len: int,
        *,
        source_vocab_size: int | None = None,
        posemb: str = "sincos",
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        pad_id: int = 0,
        key: PRNGKeyArray,
    ):
        if hidden_size % num_heads:
            raise ValueError(
                f"`hidden_size` (={hidden_size}) must be divisible by `num_heads` (={num_heads})"
            )
        if posemb not in _POSEMBS:
            raise ValueError(f"Unknown `posemb` (={posemb!r}); choose from {_POSEMBS}")
        if posemb == "sincos":
            posemb_sincos_1d(1, hidden_size)  # Validates `hidden_size` now.
        source_vocab_size = num_classes if source_vocab_size is None else source_vocab_size
        keys = jax.random.split(key, 7)
        # Unit-variance embeddings: the first layer norm of each block rescales them anyway.
        self.source_embedding = eqx.nn.Embedding(
            weight=jax.random.normal(keys[0], (source_vocab_size, hidden_size))
        )
        self.target_embedding = eqx.nn.Embedding(
            weight=jax.random.normal(keys[1], (num_classes, hidden_size))
        )
        self.source_posemb = self.target_posemb = None
        if posemb == "learn":
            self.source_posemb, self.target_posemb = (
                0.02 * jax.random.normal(k, (max_len, hidden_size)) for k in keys[2:4]
            )
        self.dropout = eqx.nn.Dropout(dropout_rate)
        common = dict(dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate)
        self.encoder = Encoder(num_layers, hidden_size, num_heads, mlp_dim, **common, key=keys[4])
        self.decoder = Decoder(num_layers, hidden_size, num_heads, mlp_dim, **common, key=keys[5])
        self.head = eqx.nn.Linear(hidden_size, num_classes, key=keys[6])
        self.max_len = max_len
        self.pad_id = pad_id

    def _embed(
        self,
        embedding: eqx.nn.Embedding,
        posemb: Float[Array, "max_len dim"] | None,
        tokens: Int[Array, " tokens"],
        name: str,
    ) -> Float[Array, "tokens dim"]:
        length = tokens.shape[0]
        if length > self.max_len:
            raise ValueError(f"{name} length (={length}) must be at most `max_len` (={self.max_len})")
        x = jax.vmap(embedding)(tokens)
        if posemb is None:
            return x + jnp.asarray(posemb_sincos_1d(length, x.shape[-1]), x.dtype)
        return x + posemb[:length].astype(x.dtype)

    def encode(
        self, source: Int[Array, " source_len"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "source_len dim"]:
        """The encoder's output tokens (the memory the decoder attends to)."""
        k_dropout, k_encoder = (None, None) if key is None else jax.random.split(key)
        x = self._embed(self.source_embedding, self.source_posemb, source, "source")
        x = self.dropout(x, key=k_dropout)
        real = source != self.pad_id
        mask = jnp.broadcast_to(real[None], (len(source), len(source)))
        return self.encoder(x, mask, key=k_encoder)

    def decode_logits(
        self,
        memory: Float[Array, "source_len dim"],
        source: Int[Array, " source_len"],
        target_in: Int[Array, " target_len"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "target_len num_classes"]:
        """The next-token logits at every target position, given the encoded source."""
        k_dropout, k_decoder = (None, None) if key is None else jax.random.split(key)
        y = self._embed(self.target_embedding, self.target_posemb, target_in, "target")
        y = self.dropout(y, key=k_dropout)
        y = self.decoder(y, memory, causal=True, memory_mask=source != self.pad_id, key=k_decoder)
        return dense(self.head, y)

    def __call__(
        self, inputs: dict[str, Int[Array, " _"]], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "target_len num_classes"]:
        """Teacher-forced logits of one example.

        Arguments:
            inputs: `{"source": [source_len], "target_in": [target_len]}` token ids.
            key: PRNG key for dropout; only needed when it is active.

        Returns:
            Logits `[target_len, num_classes]`: position `i` predicts the target token
            that follows `target_in[: i + 1]`.
        """
        missing = sorted({"source", "target_in"} - set(inputs))
        if missing:
            raise ValueError(
                f"`inputs` (keys {sorted(inputs)}) is missing {missing}; expected "
                '`{"source": ..., "target_in": ...}`'
            )
        k_encode, k_decode = (None, None) if key is None else jax.random.split(key)
        memory = self.encode(inputs["source"], key=k_encode)
        return self.decode_logits(memory, inputs["source"], inputs["target_in"], key=k_decode)

    def decode(self, source: Int[Array, " source_len"], max_len: int, bos_id: int) -> Int[Array, " max_len"]:
        """Greedy decoding: at each step, append the most likely next token.

        Runs in inference mode (no dropout). Each of the `max_len` steps reruns the
        decoder over the whole fixed-size buffer, which is simple and exact (the causal
        mask hides the not-yet-written positions) at `O(max_len)` times the cost of a
        cached decoder; fine for short sequences. Jittable: `max_len` and `bos_id` are
        static, `max_len` fixes the output's shape.

        Arguments:
            source: the source token ids.
            max_len: number of tokens to generate; at most the model's `max_len`.
            bos_id: the start token, the first decoder input.

        Returns:
            The `max_len` generated token ids (the start token excluded); nothing stops
            at an end token, so cut the output at one if the vocabulary has it.
        """
        if not 1 <= max_len <= self.max_len:
            raise ValueError(
                f"`max_len` (={max_len}) must be between 1 and the model's `max_len` (={self.max_len})"
            )
        model = eqx.nn.inference_mode(self)
        memory = model.encode(source)
        # buffer[i] is the decoder input at position i and buffer[i + 1] its prediction.
        buffer = jnp.zeros((max_len + 1,), source.dtype).at[0].set(bos_id)

        def step(i, buffer):
            logits = model.decode_logits(memory, source, buffer[:max_len])
            return buffer.at[i + 1].set(jnp.argmax(logits[i]).astype(buffer.dtype))

        return jax.lax.fori_loop(0, max_len, step, buffer)[1:]
