"""A Vision Transformer with a TokenLearner inserted between two of its blocks.

Ryoo et al., "TokenLearner: Adaptive Space-Time Tokenization for Videos", NeurIPS 2021
(arXiv:2106.11297), Section 4: ViT (Dosovitskiy et al., ICLR 2021) whose first
`tokenlearner_position` blocks see all `N` patch tokens and whose remaining blocks see
only the `S` learned ones, so that the later blocks cost about `S / N` as much (less,
for the attention's `N^2` part). With `use_token_fuser=True` each later block instead
learns `S` tokens from the `N`-token stream, processes them, and maps them back with a
TokenFuser added to its input, so every block's output keeps `N` tokens (the paper's
"TokenLearner + TokenFuser", Section 3.2).

Importing this file registers, in `scenic_eqx.nn`, `tokenlearner_vit` (every size
argument given by the config) and the sized variants `tokenlearner_vit_ti16`,
`tokenlearner_vit_s16`, `tokenlearner_vit_b16` and `tokenlearner_vit_l16` (ViT's
widths, 16x16 patches, 8 learned tokens after half of the blocks). A config imports it
with `run.import_file`.
"""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
from beartype import beartype
from jaxtyping import Array, Float, PRNGKeyArray, jaxtyped

from scenic_eqx import nn, run

_tokenlearner = run.import_file(os.path.join(os.path.dirname(__file__), "tokenlearner.py"))
TokenLearner, TokenFuser = _tokenlearner.TokenLearner, _tokenlearner.TokenFuser


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"`{name}` must be a positive int or a pair of them. Received: {value!r}.")
    return pair


def _split(key: PRNGKeyArray | None, num: int) -> list[PRNGKeyArray | None]:
    """`num` keys from `key`, or `num` times `None` (no randomness: evaluation)."""
    return [None] * num if key is None else list(jax.random.split(key, num))


class TokenLearnerViT(eqx.Module):
    """ViT classifier with a TokenLearner after block `tokenlearner_position` (GAP head).

    Arguments:
        num_classes: number of output logits.
        patch_size: side of a patch, an int or `(height, width)`.
        hidden_size: size of each token; divisible by `num_heads`.
        num_layers: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_dim: hidden size of each block's MLP.
        image_size: input side, an int or `(height, width)`; divisible by `patch_size`.
        in_channels: channels of the input image.
        num_learned_tokens: `S`, the tokens the TokenLearner learns.
        tokenlearner_position: blocks that run on all patch tokens before the
            TokenLearner, in `[0, num_layers)`; `None` for half of them
            (`num_layers // 2`), the paper's "TokenLearner at 1/2".
        use_token_fuser: learn and fuse back tokens around every later block instead.
        bottleneck_dim: hidden size of the TokenLearner's (and TokenFuser's) MLP.
        normalization: the TokenLearner's weighting, `"softmax"` or `"sigmoid"`.
        dropout_rate: dropout after the position embedding, inside the blocks and the
            TokenLearner.
        attention_dropout_rate: dropout on the attention weights.
        stochastic_depth: stochastic depth rate of the last block (0 in the first).
        layer_norm_eps: epsilon of every layer norm.
        key: PRNG key for initialisation (keyword only).
    """

    embedding: nn.PatchEmbedding
    pos_embedding: nn.LearnedPositionEmbedding
    dropout: eqx.nn.Dropout
    blocks_before: tuple[nn.EncoderBlock, ...]
    token_learners: tuple[TokenLearner, ...]
    blocks_after: tuple[nn.EncoderBlock, ...]
    token_fusers: tuple[TokenFuser, ...]
    norm: nn.LayerNorm
    head: eqx.nn.Linear
    image_size: tuple[int, int] = eqx.field(static=True)

    def __init__(
        self,
        num_classes: int,
        patch_size: int | tuple[int, int],
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        mlp_dim: int,
        image_size: int | tuple[int, int] = 224,
        *,
        in_channels: int = 3,
        num_learned_tokens: int = 8,
        tokenlearner_position: int | None = None,
        use_token_fuser: bool = False,
        bottleneck_dim: int = 64,
        normalization: str = "softmax",
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        stochastic_depth: float = 0.0,
        layer_norm_eps: float = 1e-6,
        key: PRNGKeyArray,
    ):
        patch, image = _pair(patch_size, "patch_size"), _pair(image_size, "image_size")
        if image[0] % patch[0] or image[1] % patch[1]:
            raise ValueError(
                f"`image_size` must be divisible by `patch_size`. Received: image_size={image_size!r}, "
                f"patch_size={patch_size!r}."
            )
        if hidden_size % num_heads:
            raise ValueError(
                f"`hidden_size` must be divisible by `num_heads`. Received: hidden_size={hidden_size}, "
                f"num_heads={num_heads}."
            )
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"`num_layers` must be a positive int. Received: {num_layers!r}.")
        position = num_layers // 2 if tokenlearner_position is None else tokenlearner_position
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < num_layers:
            raise ValueError(
                f"`tokenlearner_position` (the blocks before the TokenLearner) must be an int in "
                f"[0, num_layers={num_layers}), so that at least one block sees the learned tokens. "
                f"Received: {tokenlearner_position!r}."
            )
        k_embed, k_pos, k_blocks, k_learners, k_fusers, k_head = jax.random.split(key, 6)
        num_patches = (image[0] // patch[0]) * (image[1] // patch[1])
        self.embedding = nn.PatchEmbedding(in_channels, hidden_size, patch, key=k_embed)
        self.pos_embedding = nn.LearnedPositionEmbedding(num_patches, hidden_size, key=k_pos)
        self.dropout = eqx.nn.Dropout(dropout_rate)
        blocks = tuple(
            nn.EncoderBlock(
                hidden_size,
                num_heads,
                mlp_dim,
                dropout_rate=dropout_rate,
                attention_dropout_rate=attention_dropout_rate,
                # Grows linearly from 0 in the first block, as in `nn.Encoder`.
                drop_path_rate=stochastic_depth * i / max(num_layers - 1, 1),
                layer_norm_eps=layer_norm_eps,
                key=block_key,
            )
            for i, block_key in enumerate(jax.random.split(k_blocks, num_layers))
        )
        self.blocks_before, self.blocks_after = blocks[:position], blocks[position:]
        num_learners = len(self.blocks_after) if use_token_fuser else 1
        self.token_learners = tuple(
            TokenLearner(
                hidden_size,
                num_learned_tokens,
                bottleneck_dim=bottleneck_dim,
                normalization=normalization,
                dropout_rate=dropout_rate,
                layer_norm_eps=layer_norm_eps,
                key=k,
            )
            for k in jax.random.split(k_learners, num_learners)
        )
        self.token_fusers = tuple(
            TokenFuser(
                hidden_size,
                num_learned_tokens,
                bottleneck_dim=bottleneck_dim,
                dropout_rate=dropout_rate,
                layer_norm_eps=layer_norm_eps,
                key=k,
            )
            for k in (jax.random.split(k_fusers, num_learners) if use_token_fuser else ())
        )
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.head = eqx.nn.Linear(hidden_size, num_classes, key=k_head)
        self.image_size = image

    def features(
        self, x: Float[Array, "height width channels"], *, key: PRNGKeyArray | None = None
    ) -> dict[str, Array]:
        """Named intermediates of one image.

        Returns:
            `stem` (patch tokens `[N, hidden]`), `before_tokenlearner` (after the first
            `tokenlearner_position` blocks, `[N, hidden]`), `learned_tokens` (the first
            TokenLearner's output, `[S, hidden]`), `encoder_out` (after the last block and
            the final norm: `[S, hidden]`, or `[N, hidden]` with the TokenFuser),
            `pre_logits` (their mean) and `logits`.
        """
        if x.shape[:2] != self.image_size:
            raise ValueError(
                f"`x` must be an image of `image_size` {self.image_size}. Received: shape {x.shape}."
            )
        k_dropout, k_before, k_after, k_learners, k_fusers = _split(key, 5)
        out = {"stem": self.embedding(x)}
        h = self.dropout(self.pos_embedding(out["stem"]), key=k_dropout)
        for block, k in zip(self.blocks_before, _split(k_before, len(self.blocks_before))):
            h = block(h, key=k)
        out["before_tokenlearner"] = h
        num_after = len(self.blocks_after)
        block_keys, learner_keys, fuser_keys = (_split(k, num_after) for k in (k_after, k_learners, k_fusers))
        if not self.token_fusers:
            h = out["learned_tokens"] = self.token_learners[0](h, key=k_learners)
            for block, k in zip(self.blocks_after, block_keys):
                h = block(h, key=k)
        else:
            for i, (block, learner, fuser) in enumerate(
                zip(self.blocks_after, self.token_learners, self.token_fusers)
            ):
                learned = learner(h, key=learner_keys[i])
                out.setdefault("learned_tokens", learned)
                h = h + fuser(block(learned, key=block_keys[i]), h, key=fuser_keys[i])
        h = out["encoder_out"] = self.norm(h)
        out["pre_logits"] = jnp.mean(h, axis=0)
        out["logits"] = self.head(out["pre_logits"])
        return out

    @jaxtyped(typechecker=beartype)
    def __call__(
        self, x: Float[Array, "height width channels"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " num_classes"]:
        """Logits of one image; `key` drives dropout and stochastic depth in training."""
        return self.features(x, key=key)["logits"]


# ViT's widths (Dosovitskiy et al. 2021, Table 1; Ti from DeiT), 16x16 patches, 8
# tokens learned after half of the blocks: the paper's image setting.
_SIZES = {name: nn.VIT_VARIANTS[f"{name}/16"] for name in ("Ti", "S", "B", "L")}

# `overwrite`: `run.import_file` runs this file again once it has changed on disk, and
# the names registered by its first run are then taken.
nn.register("tokenlearner_vit", TokenLearnerViT, overwrite=True)
for _name, _size in _SIZES.items():
    nn.register(
        f"tokenlearner_vit_{_name.lower()}16",
        TokenLearnerViT,
        overwrite=True,
        **_size,
        num_learned_tokens=8,
        tokenlearner_position=_size["num_layers"] // 2,
    )
