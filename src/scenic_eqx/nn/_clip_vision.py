"""CLIP's image tower: a ViT trunk with a norm before the encoder and a linear projection.

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision" (arXiv:2103.00020), section 2.4: the Vision Transformer of Dosovitskiy et
al. 2021 "with the minor modification of adding an additional layer normalization to the
combined patch and position embeddings before the transformer".

Module tree (Linear weights `[out_features, in_features]`, as in PyTorch):

```
CLIPVisionTransformer
├── embedding: PatchEmbedding      .weight [width, in_channels, ph, pw] (no bias)
├── cls_token [1, width]
├── pos_embedding                  .weight [1 + num_patches, width] (class token first)
├── pre_norm: LayerNorm            OpenAI's `ln_pre`, transformers' `pre_layrnorm`
├── encoder: Encoder               blocks as in ViT; its final `norm` is OpenAI's `ln_post`
└── projection: Linear             [embed_dim, width], no bias
```
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._encoder import Encoder
from ._input_checks import check_image
from ._layer_norm import LayerNorm
from ._linear import linear
from ._patch_embedding import PatchEmbedding, _pair
from ._position_embedding import LearnedPositionEmbedding


class CLIPVisionTransformer(eqx.Module):
    """The image encoder of CLIP (Radford et al. 2021): an image to one embedding.

    The image is cut into patches, a class token is prepended, a learned position
    embedding added, then `pre_norm`, the pre-LN transformer blocks and their final norm;
    the class token's output is projected to `embed_dim`. The embedding is not
    normalised.

    Arguments:
        embed_dim: size of the output embedding (the joint image-text space).
        image_size: input side, an int or `(height, width)`; divisible by `patch_size`.
        patch_size: side of a patch, an int or `(height, width)`.
        width: size of each token; divisible by `num_heads`.
        num_layers: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_dim: hidden size of each block's MLP; `4 * width` when `None`, as in CLIP.
        in_channels: channels of the input image.
        quick_gelu: `x * sigmoid(1.702 x)` in the MLPs (OpenAI's models) instead of the
            exact GELU (most open_clip models trained by others).
        layer_norm_eps: epsilon of every layer norm (1e-5, PyTorch's default, in the
            released models).
        scan_layers, remat_policy: as in `Encoder`.
        key: PRNG key for initialisation (keyword only).
    """

    embedding: PatchEmbedding
    cls_token: Float[Array, "1 width"]
    pos_embedding: LearnedPositionEmbedding
    pre_norm: LayerNorm
    encoder: Encoder
    projection: eqx.nn.Linear
    image_size: tuple[int, int] = eqx.field(static=True)

    def __init__(
        self,
        *,
        embed_dim: int,
        image_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        width: int,
        num_layers: int,
        num_heads: int,
        mlp_dim: int | None = None,
        in_channels: int = 3,
        quick_gelu: bool = True,
        layer_norm_eps: float = 1e-5,
        scan_layers: bool = False,
        remat_policy: str | None = None,
        key: PRNGKeyArray,
    ):
        patch, image = _pair(patch_size, "patch_size"), _pair(image_size, "image_size")
        if image[0] % patch[0] or image[1] % patch[1]:
            raise ValueError(
                f"`image_size` (={image_size}) must be divisible by `patch_size` (={patch_size}). "
                f"Received: image_size={image_size!r}, patch_size={patch_size!r}."
            )
        if width % num_heads:
            raise ValueError(
                f"`width` (={width}) must be divisible by `num_heads` (={num_heads}). "
                f"Received: width={width}, num_heads={num_heads}."
            )
        k_embed, k_cls, k_pos, k_encoder, k_proj = jax.random.split(key, 5)
        num_patches = (image[0] // patch[0]) * (image[1] // patch[1])
        scale = width**-0.5  # OpenAI's initialisation of the class token and projection
        self.embedding = PatchEmbedding(in_channels, width, patch, use_bias=False, key=k_embed)
        self.cls_token = scale * jax.random.normal(k_cls, (1, width))
        self.pos_embedding = LearnedPositionEmbedding(1 + num_patches, width, key=k_pos)
        self.pre_norm = LayerNorm(width, eps=layer_norm_eps)
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
        self.projection = linear(scale * jax.random.normal(k_proj, (embed_dim, width)), None)
        self.image_size = image

    def __call__(
        self, x: Float[Array, "height width channels"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " embed_dim"]:
        """The (unnormalised) embedding of one image; `key` is unused (no dropout)."""
        del key
        check_image(
            x,
            model="CLIPVisionTransformer",
            in_channels=self.embedding.weight.shape[1],
            image_size=self.image_size,
        )
        h = self.embedding(x)
        h = jnp.concatenate([self.cls_token.astype(h.dtype), h])
        h = self.encoder(self.pre_norm(self.pos_embedding(h)))
        return self.projection(h[0])
