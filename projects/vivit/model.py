"""`vivit_from_image_vit`: a ViViT built from a config and started from an image ViT checkpoint.

Registered as a model, so that a config does what the paper does (Arnab et al. 2021,
section 3.4) with one key:

    config.model_name = "vivit_from_image_vit"
    config.model.backbone_weights = "ViT-B_16.npz"   # an ImageNet-21k ViT-B/16

The ViT is built with the ViViT's sizes, loaded with `nn.load_weights` (Google `.npz`,
timm or transformers `.safetensors`), and its weights go into the ViViT by
`nn.vivit_from_vit`; the ViViT takes the ViT's numerics (GELU form, LayerNorm eps).
The ViT saw normalised pixels, `(x - mean) / std`, while the video pipelines give `x` in
[0, 1]: that affine map is folded into the tubelet embedding (`fold_input_normalization`),
so the video model starts where the image model was.
"""

import inspect
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from scenic_eqx import nn

_VIVIT_ARGUMENTS = tuple(a for a in inspect.signature(nn.ViViT).parameters if a not in ("num_classes", "key"))


def fold_input_normalization(vivit: nn.ViViT, mean: Sequence[float], std: Sequence[float]) -> nn.ViViT:
    """`vivit` whose tubelet embedding of `x` is the old embedding of `(x - mean) / std`.

    The embedding is linear: `W ((x - m) / s) + b = (W / s) x + (b - (W / s) m)`, per
    input channel. The result computes on [0, 1] videos what `vivit` computes on videos
    normalised as its image model's inputs were (Google's ViTs: mean = std = 0.5, i.e.
    [-1, 1]).

    Arguments:
        vivit: the model.
        mean, std: one value per input channel.
    """
    weight = vivit.embedding.weight  # [dim, channels, time, height, width]
    channels = weight.shape[1]
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ValueError(
            f"`mean` and `std` must have one value per input channel ({channels}), `std` "
            f"positive. Received: mean={tuple(mean)}, std={tuple(std)}."
        )
    scaled = weight / jnp.asarray(std, weight.dtype)[None, :, None, None, None]
    bias = vivit.embedding.bias - jnp.einsum("dcthw,c->d", scaled, jnp.asarray(mean, weight.dtype))
    return eqx.tree_at(lambda m: (m.embedding.weight, m.embedding.bias), vivit, (scaled, bias))


def _numerics(vit: nn.ViT) -> dict:
    """The ViT's GELU form and LayerNorm eps (`load_weights` sets them to its checkpoint's)."""
    blocks = vit.encoder.blocks
    block = blocks if isinstance(blocks, nn.EncoderBlock) else blocks[0]
    return {"gelu_approximate": block.mlp.gelu_approximate, "layer_norm_eps": vit.encoder.norm.eps}


def vivit_from_image_vit(
    num_classes: int,
    *,
    key: jax.Array,
    backbone_weights: str | None = None,
    tubelet_init: str = "central_frame",
    backbone_num_classes: int = 21_843,
    backbone_representation_size: int | None = None,
    backbone_input_mean: Sequence[float] | None = (0.5, 0.5, 0.5),
    backbone_input_std: Sequence[float] | None = (0.5, 0.5, 0.5),
    **vivit_arguments,
) -> nn.ViViT:
    """An `nn.ViViT(num_classes, **vivit_arguments)`, with an image ViT's weights if given.

    Arguments:
        num_classes: logits of the ViViT.
        key: PRNG key (the ViViT's fresh parts, the ViT's before loading).
        backbone_weights: path of the image ViT's checkpoint, its architecture the
            ViViT's (widths, `tubelet_size[1:]` patches, classifier); `None`: the
            ViViT's own random initialisation, nothing loaded.
        tubelet_init: `"central_frame"` or `"average"` (`nn.vivit_from_vit`).
        backbone_num_classes: the checkpoint's head size (ImageNet-21k: 21,843); its head
            is used only if it is the ViViT's, else `load_weights` warns and the ViViT
            keeps a fresh head.
        backbone_representation_size: the checkpoint's `pre_logits` size (the original
            ImageNet-21k ViTs have one; AugReg's have none).
        backbone_input_mean, backbone_input_std: the per-channel normalisation of the
            ViT's inputs from [0, 1] pixels (default: Google's [-1, 1]); `None`: none, the
            embedding is not changed.
        **vivit_arguments: the arguments of `nn.ViViT` (`tubelet_size`, `hidden_size`,
            `num_layers`, `num_heads`, `mlp_dim`, `num_frames`, `image_size`,
            `attention_type`, ...).
    """
    unknown = sorted(set(vivit_arguments) - set(_VIVIT_ARGUMENTS))
    if unknown:
        raise ValueError(
            f"`vivit_from_image_vit` takes the arguments of `nn.ViViT` ({', '.join(_VIVIT_ARGUMENTS)}) "
            f"and its own. Received: unknown argument(s) {', '.join(map(repr, unknown))}."
        )
    if backbone_weights is None:
        return nn.ViViT(num_classes, **vivit_arguments, key=key)
    k_vit, k_vivit = jax.random.split(key)
    # The ViViT's shape (nothing initialised) tells the ViT's architecture.
    shape = eqx.filter_eval_shape(nn.ViViT, num_classes, **vivit_arguments, key=k_vivit)
    vit = nn.ViT(
        backbone_num_classes,
        patch_size=shape.embedding.tubelet_size[1:],
        hidden_size=vivit_arguments["hidden_size"],
        num_layers=vivit_arguments["num_layers"],
        num_heads=vivit_arguments["num_heads"],
        mlp_dim=vivit_arguments["mlp_dim"],
        image_size=shape.input_size[1:],
        in_channels=shape.embedding.weight.shape[1],
        classifier=shape.classifier,
        representation_size=backbone_representation_size,
        key=k_vit,
    )
    vit = nn.load_weights(vit, backbone_weights)
    vivit = nn.ViViT(num_classes, **{**_numerics(vit), **vivit_arguments}, key=k_vivit)
    vivit = nn.vivit_from_vit(vivit, vit, tubelet_init=tubelet_init)
    if backbone_input_mean is None and backbone_input_std is None:
        return vivit
    channels = shape.embedding.weight.shape[1]
    mean = (0.0,) * channels if backbone_input_mean is None else backbone_input_mean
    std = (1.0,) * channels if backbone_input_std is None else backbone_input_std
    return fold_input_normalization(vivit, mean, std)


# ViViT-B/16x2's sizes by default (the paper's Kinetics models start from ViT-B/16).
nn.register("vivit_from_image_vit", vivit_from_image_vit, **nn.VIVIT_VARIANTS["B/16x2"])
