"""Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words").

Module tree (parameter paths, for weight import by name; Linear weights are
`[out_features, in_features]`, as in PyTorch):

```
ViT
├── embedding: PatchEmbedding        .weight [hidden, in_channels, ph, pw], .bias [hidden]
├── cls_token [1, hidden]            (classifier="token" only, else None)
├── pos_embedding                    .weight [num_tokens, hidden] (posemb="learn"; it covers
│                                    the class token too, as in Google's ViT, timm and
│                                    transformers), a fixed SinCos1DPositionEmbedding or
│                                    SinCos2DPositionEmbedding, or None (posemb="none")
├── encoder: Encoder
│   ├── blocks[i]: EncoderBlock      (scan_layers=True: one block, arrays [num_layers, ...])
│   │   ├── norm1: LayerNorm         .weight, .bias [hidden]
│   │   ├── attention                .query/.key/.value: Linear [heads * head_dim, hidden],
│   │   │                            .out: Linear [hidden, heads * head_dim]
│   │   ├── norm2: LayerNorm
│   │   └── mlp: MlpBlock            .dense1 [mlp_dim, hidden], .dense2 [hidden, mlp_dim]
│   └── norm: LayerNorm              (Google's `encoder_norm`, timm's `norm`)
├── map_head: MAPHead                (classifier="map" only) .probe [1, hidden],
│                                    .attention, .norm, .mlp as above
├── pre_logits: Linear               (representation_size only), followed by tanh
└── head: Linear                     [num_classes, hidden or representation_size]
```

Google's query kernel `[hidden, heads, head_dim]` maps to `query.weight` by
`kernel.reshape(hidden, -1).T`; its out kernel `[heads, head_dim, hidden]` by
`kernel.reshape(-1, hidden).T`. The class token is prepended, then the position
embedding added to every token; with the fixed `posemb="sincos1d"` or `"sincos2d"`
the class token gets none.
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._attention import attention_width
from ._encoder import Encoder
from ._input_checks import check_image
from ._map_head import MAPHead
from ._patch_embedding import PatchEmbedding, _pair
from ._position_embedding import (
    LearnedPositionEmbedding,
    SinCos1DPositionEmbedding,
    SinCos2DPositionEmbedding,
)
from ._remat import check_remat_policy

_WIDTHS = {
    # name: hidden_size, mlp_dim, num_heads, num_layers. B, L, H from Dosovitskiy et
    # al. 2021 (Table 1); Ti and S from Touvron et al. 2021 (DeiT) and Steiner et al.
    # 2022 (AugReg).
    "Ti": (192, 768, 3, 12),
    "S": (384, 1536, 6, 12),
    "B": (768, 3072, 12, 12),
    "L": (1024, 4096, 16, 24),
    "H": (1280, 5120, 16, 32),
}

VIT_VARIANTS: dict[str, dict[str, int]] = {
    f"{name}/{patch}": {
        "patch_size": patch,
        "hidden_size": hidden,
        "mlp_dim": mlp,
        "num_heads": heads,
        "num_layers": layers,
    }
    for (name, (hidden, mlp, heads, layers)), patch in itertools.product(_WIDTHS.items(), (8, 14, 16, 32))
}
"""ViT variants by name, e.g. `"B/16"`: width from `_WIDTHS`, patch size after the slash."""

_CLASSIFIERS = ("token", "gap", "map")
_POSEMBS = ("learn", "sincos1d", "sincos2d", "none")
PositionEmbedding = LearnedPositionEmbedding | SinCos1DPositionEmbedding | SinCos2DPositionEmbedding


def _position_embedding(
    posemb: str, grid: tuple[int, int], num_prefix: int, dim: int, *, key: PRNGKeyArray
) -> PositionEmbedding | None:
    """The position embedding `posemb` names, for `num_prefix` tokens and then a `grid` of patches."""
    if posemb == "learn":
        return LearnedPositionEmbedding(num_prefix + grid[0] * grid[1], dim, key=key)
    if posemb == "sincos1d":
        return SinCos1DPositionEmbedding(grid[0] * grid[1], dim, num_prefix_tokens=num_prefix)
    if posemb == "sincos2d":
        return SinCos2DPositionEmbedding(*grid, dim, num_prefix_tokens=num_prefix)
    return None


class ViT(eqx.Module):
    """Vision Transformer classifier (Dosovitskiy et al. 2021).

    Arguments:
        num_classes: number of output logits.
        patch_size: side of a patch, an int or `(height, width)`.
        hidden_size: size of each token; divisible by `num_heads` unless `head_dim` is
            given.
        num_layers: number of encoder blocks.
        num_heads: attention heads per block.
        mlp_dim: hidden size of each block's MLP.
        head_dim: size of each attention head; defaults to `hidden_size / num_heads`.
            Given, the attention is `num_heads * head_dim` wide whatever `hidden_size`
            (timm's `head_dim`, big_vision's `qkv_features`); see
            `MultiHeadDotProductAttention`.
        image_size: input side, an int or `(height, width)`; divisible by `patch_size`.
        in_channels: channels of the input image.
        classifier: `"token"` (class token), `"gap"` (mean of the tokens) or `"map"`
            (multihead attention pooling).
        posemb: `"learn"` (learned), `"sincos1d"` (fixed 1-D sine-cosine of each
            patch's row-major index, Vaswani et al. 2017), `"sincos2d"` (fixed 2-D
            sine-cosine of its row and column, Chen et al. 2021) or `"none"`.
        dropout_rate: dropout after the position embedding and inside the blocks.
        attention_dropout_rate: dropout on the attention weights.
        stochastic_depth: stochastic depth rate of the last block (0 in the first).
        representation_size: if set, a `Linear -> tanh` of this size before the head.
        gelu_approximate: tanh-approximate GELU (`True` for Google's checkpoints).
        layer_norm_eps: epsilon of every layer norm (transformers' checkpoints: 1e-12).
        scan_layers: run the blocks with `lax.scan` over stacked weights.
        remat_policy: `None`, or rematerialise each encoder block in the backward pass
            by this `jax.checkpoint` policy (`"nothing_saveable"`, `"dots_saveable"`,
            `"dots_with_no_batch_dims_saveable"`, `"everything_saveable"`): less memory
            for one more forward pass. See `Encoder`.
        key: PRNG key for initialisation (keyword only).
    """

    embedding: PatchEmbedding
    cls_token: Float[Array, "1 dim"] | None
    pos_embedding: PositionEmbedding | None
    dropout: eqx.nn.Dropout
    encoder: Encoder
    map_head: MAPHead | None
    pre_logits: eqx.nn.Linear | None
    head: eqx.nn.Linear
    classifier: str = eqx.field(static=True)
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
        head_dim: int | None = None,
        in_channels: int = 3,
        classifier: str = "token",
        posemb: str = "learn",
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        stochastic_depth: float = 0.0,
        representation_size: int | None = None,
        gelu_approximate: bool = False,
        layer_norm_eps: float = 1e-6,
        scan_layers: bool = False,
        remat_policy: str | None = None,
        key: PRNGKeyArray,
    ):
        patch, image = _pair(patch_size, "patch_size"), _pair(image_size, "image_size")
        if image[0] % patch[0] or image[1] % patch[1]:
            raise ValueError(
                f"`image_size` (={image_size}) must be divisible by `patch_size` (={patch_size})"
            )
        attention_width(hidden_size, num_heads, head_dim, dim_name="hidden_size")
        if classifier not in _CLASSIFIERS:
            raise ValueError(f"Unknown `classifier` (={classifier!r}); choose from {_CLASSIFIERS}")
        if posemb not in _POSEMBS:
            raise ValueError(f"Unknown `posemb` (={posemb!r}); choose from {_POSEMBS}")
        check_remat_policy(remat_policy)
        keys = jax.random.split(key, 6)
        grid = (image[0] // patch[0], image[1] // patch[1])
        num_prefix = 1 if classifier == "token" else 0
        self.embedding = PatchEmbedding(in_channels, hidden_size, patch, key=keys[0])
        self.cls_token = jnp.zeros((1, hidden_size)) if classifier == "token" else None
        self.pos_embedding = _position_embedding(posemb, grid, num_prefix, hidden_size, key=keys[1])
        self.dropout = eqx.nn.Dropout(dropout_rate)
        self.encoder = Encoder(
            num_layers,
            hidden_size,
            num_heads,
            mlp_dim,
            head_dim=head_dim,
            dropout_rate=dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            stochastic_depth=stochastic_depth,
            gelu_approximate=gelu_approximate,
            layer_norm_eps=layer_norm_eps,
            scan_layers=scan_layers,
            remat_policy=remat_policy,
            key=keys[2],
        )
        self.map_head = (
            MAPHead(
                hidden_size,
                num_heads,
                mlp_dim,
                head_dim=head_dim,
                gelu_approximate=gelu_approximate,
                layer_norm_eps=layer_norm_eps,
                key=keys[3],
            )
            if classifier == "map"
            else None
        )
        self.pre_logits = (
            None
            if representation_size is None
            else eqx.nn.Linear(hidden_size, representation_size, key=keys[4])
        )
        self.head = eqx.nn.Linear(representation_size or hidden_size, num_classes, key=keys[5])
        self.classifier = classifier
        self.image_size = image

    def features(
        self, x: Float[Array, "height width channels"], *, key: PRNGKeyArray | None = None
    ) -> dict[str, Array]:
        """Named intermediates of one image.

        Returns:
            `stem` (patch tokens `[tokens, hidden]`), `encoder_out` (tokens after the
            final norm, class token first if any), `pre_logits` (the pooled vector after
            `pre_logits`, if any) and `logits`.
        """
        check_image(x, model="ViT", in_channels=self.embedding.weight.shape[1], image_size=self.image_size)
        k_dropout, k_encoder = (None, None) if key is None else jax.random.split(key)
        out = {"stem": self.embedding(x)}
        h = out["stem"]
        if self.cls_token is not None:
            h = jnp.concatenate([self.cls_token.astype(h.dtype), h])
        if self.pos_embedding is not None:
            h = self.pos_embedding(h)
        h = self.dropout(h, key=k_dropout)
        h = out["encoder_out"] = self.encoder(h, key=k_encoder)
        if self.classifier == "token":
            h = h[0]
        elif self.classifier == "gap":
            h = jnp.mean(h, axis=0)
        else:
            h = self.map_head(h)
        if self.pre_logits is not None:
            h = jnp.tanh(self.pre_logits(h))
        out["pre_logits"] = h
        out["logits"] = self.head(h)
        return out

    def __call__(
        self, x: Float[Array, "height width channels"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " num_classes"]:
        """Logits of one image; `key` drives dropout and stochastic depth in training."""
        return self.features(x, key=key)["logits"]
