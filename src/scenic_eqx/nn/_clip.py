"""CLIP: an image encoder and a text encoder trained to agree (Radford et al. 2021).

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision", ICML 2021 (arXiv:2103.00020). Images and captions are embedded by two
towers into one `embed_dim` space; training (a contrastive task) pulls the cosine
similarity of matching pairs up and of the others down, with the similarities scaled by
`exp(logit_scale)`, a learned temperature initialised to `1 / 0.07`.

Module tree:

```
CLIP
├── image_tower: CLIPVisionTransformer   (see `_clip_vision.py`)
├── text_tower: CLIPTextTransformer      (see `_clip_text.py`)
└── logit_scale []                       log of the inverse temperature
```

Only the ViT image towers are supported; the paper's ResNet towers (OpenAI's
`ModifiedResNet`, with attention pooling) are not.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._clip_text import CLIPTextTransformer
from ._clip_vision import CLIPVisionTransformer

_OPENAI_TEXT = {"vocab_size": 49408, "context_length": 77}

CLIP_VARIANTS: dict[str, dict[str, int]] = {
    # Radford et al. 2021, Table 20 (CLIP-ViT hyperparameters).
    **{
        f"ViT-B/{patch}": {
            "embed_dim": 512,
            "image_size": 224,
            "patch_size": patch,
            "vision_width": 768,
            "vision_layers": 12,
            "vision_heads": 12,
            **_OPENAI_TEXT,
            "text_width": 512,
            "text_layers": 12,
            "text_heads": 8,
        }
        for patch in (32, 16)
    },
    **{
        name: {
            "embed_dim": 768,
            "image_size": size,
            "patch_size": 14,
            "vision_width": 1024,
            "vision_layers": 24,
            "vision_heads": 16,
            **_OPENAI_TEXT,
            "text_width": 768,
            "text_layers": 12,
            "text_heads": 12,
        }
        for name, size in (("ViT-L/14", 224), ("ViT-L/14@336px", 336))
    },
    # Not from the paper: a few-second model for tests and smoke runs, with CLIP's vocabulary.
    "tiny": {
        "embed_dim": 32,
        "image_size": 32,
        "patch_size": 8,
        "vision_width": 32,
        "vision_layers": 2,
        "vision_heads": 2,
        **_OPENAI_TEXT,
        "text_width": 32,
        "text_layers": 2,
        "text_heads": 2,
    },
}
"""CLIP variants by name: the keyword arguments of `CLIP` for each released ViT model."""

_INPUT_KEYS = ("image", "text")


class CLIP(eqx.Module):
    """CLIP's dual encoder (Radford et al. 2021): embeddings of an image and of a text.

    Arguments:
        embed_dim: size of the joint embedding space.
        image_size: input side, an int or `(height, width)`; divisible by `patch_size`.
        patch_size: side of an image patch.
        vision_width, vision_layers, vision_heads: width, depth and heads of the image
            transformer.
        vocab_size: number of token ids (49408 for CLIP's byte-pair vocabulary).
        context_length: the most tokens of a text (77 in CLIP).
        text_width, text_layers, text_heads: width, depth and heads of the text
            transformer.
        vision_mlp_dim, text_mlp_dim: hidden sizes of the MLPs; `4 * width` when `None`.
        in_channels: channels of the input image.
        eos_token_id: where the text is pooled: `None` for the position of the largest
            id (OpenAI), or the first position of this id (transformers); see
            `CLIPTextTransformer`.
        quick_gelu: `x * sigmoid(1.702 x)` in every MLP, as OpenAI's models; `False` for
            the exact GELU (most open_clip models trained by others).
        layer_norm_eps: epsilon of every layer norm (1e-5 in the released models).
        logit_scale_init: initial `logit_scale`; `log(1 / 0.07)` as in the paper.
        scan_layers, remat_policy: as in `Encoder`, for both towers.
        key: PRNG key for initialisation (keyword only).
    """

    image_tower: CLIPVisionTransformer
    text_tower: CLIPTextTransformer
    logit_scale: Float[Array, ""]

    def __init__(
        self,
        *,
        embed_dim: int,
        image_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        vision_width: int,
        vision_layers: int,
        vision_heads: int,
        vocab_size: int,
        context_length: int,
        text_width: int,
        text_layers: int,
        text_heads: int,
        vision_mlp_dim: int | None = None,
        text_mlp_dim: int | None = None,
        in_channels: int = 3,
        eos_token_id: int | None = None,
        quick_gelu: bool = True,
        layer_norm_eps: float = 1e-5,
        logit_scale_init: float = math.log(1 / 0.07),
        scan_layers: bool = False,
        remat_policy: str | None = None,
        key: PRNGKeyArray,
    ):
        k_image, k_text = jax.random.split(key)
        shared = {
            "quick_gelu": quick_gelu,
            "layer_norm_eps": layer_norm_eps,
            "scan_layers": scan_layers,
            "remat_policy": remat_policy,
        }
        self.image_tower = CLIPVisionTransformer(
            embed_dim=embed_dim,
            image_size=image_size,
            patch_size=patch_size,
            width=vision_width,
            num_layers=vision_layers,
            num_heads=vision_heads,
            mlp_dim=vision_mlp_dim,
            in_channels=in_channels,
            **shared,
            key=k_image,
        )
        self.text_tower = CLIPTextTransformer(
            embed_dim=embed_dim,
            vocab_size=vocab_size,
            context_length=context_length,
            width=text_width,
            num_layers=text_layers,
            num_heads=text_heads,
            mlp_dim=text_mlp_dim,
            eos_token_id=eos_token_id,
            **shared,
            key=k_text,
        )
        self.logit_scale = jnp.asarray(logit_scale_init, jnp.float32)

    def encode_image(self, image: Float[Array, "height width channels"]) -> Float[Array, " embed_dim"]:
        """The (unnormalised) embedding of one image."""
        return self.image_tower(image)

    def encode_text(self, tokens: Int[Array, " context"]) -> Float[Array, " embed_dim"]:
        """The (unnormalised) embedding of one token sequence (see `data.BPETokenizer`)."""
        return self.text_tower(tokens)

    def __call__(self, inputs: dict[str, Array], *, key: PRNGKeyArray | None = None) -> dict[str, Array]:
        """Embeddings of one image-text pair.

        Arguments:
            inputs: `{"image": [height, width, channels] float, "text": [context] int}`.
            key: unused (CLIP has no dropout); taken as the loops pass one.

        Returns:
            `{"image_embedding": [embed_dim], "text_embedding": [embed_dim],
            "logit_scale": []}`: the embeddings are not normalised; `logit_scale` is the
            learned log inverse temperature (under `jax.vmap` one copy per example).
        """
        del key
        if not isinstance(inputs, dict) or sorted(inputs) != sorted(_INPUT_KEYS):
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(
                f"`inputs` of CLIP must be a dict with exactly the keys {list(_INPUT_KEYS)} (an image "
                f"and its token ids); use `encode_image` or `encode_text` for one of them. Received: {got}."
            )
        return {
            "image_embedding": self.encode_image(inputs["image"]),
            "text_embedding": self.encode_text(inputs["text"]),
            "logit_scale": self.logit_scale,
        }
