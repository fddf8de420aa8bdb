"""The built-in model families, their variants, and the short names that alias them.

A family is one constructor; a variant is the keyword arguments of one published
configuration ("B/16" of ViT, "R50x3" of BiT). A short name ("vit_b16", "bit_r50x3")
is an alias of one (family, variant) pair.
"""

import inspect
from collections.abc import Callable
from typing import Any

import equinox as eqx
from jaxtyping import PRNGKeyArray

from ._bit import BiTResNet
from ._clip import CLIP, CLIP_VARIANTS
from ._detr import DETR
from ._fully_connected import FullyConnected
from ._mixer import MIXER_VARIANTS, MlpMixer
from ._resnet import RESNET_VARIANTS, ResNet
from ._simple_cnn import SimpleCNN
from ._unet import UNet
from ._vit import VIT_VARIANTS, ViT
from ._vivit import VIVIT_VARIANTS, ViViT

# The variant of a family with a single configuration, whose constructor defaults are it.
DEFAULT_VARIANT = "default"


def _clip(*, num_classes: int | None = None, key: PRNGKeyArray, **kwargs: Any) -> CLIP:
    """`CLIP(**kwargs, key=key)` for the registry, which passes every model `num_classes`.

    A dual encoder has no classifier head (zero-shot classes come from text prompts), so
    `num_classes` (a dataset's class count, under the runner) is not used.
    """
    del num_classes
    return CLIP(**kwargs, key=key)


# `create` checks overrides against the signature: CLIP's own arguments.
_clip.__signature__ = inspect.signature(CLIP).replace(
    parameters=[
        inspect.Parameter("num_classes", inspect.Parameter.KEYWORD_ONLY, default=None),
        *inspect.signature(CLIP).parameters.values(),
    ]
)

# BiT's width factor k is `width=64 * k` (Kolesnikov et al. 2020): "R50x3".
_BIT_MODELS = ((50, 1), (50, 3), (101, 1), (101, 3), (152, 2))

FAMILIES: dict[str, tuple[Callable[..., eqx.Module], dict[str, dict[str, Any]]]] = {
    "fully_connected": (FullyConnected, {DEFAULT_VARIANT: {}}),
    "simple_cnn": (SimpleCNN, {DEFAULT_VARIANT: {}}),
    "unet": (UNet, {DEFAULT_VARIANT: {}}),
    # He et al. 2016, Table 1: "50" is ResNet-50.
    "resnet": (ResNet, {str(depth): {"depth": depth} for depth in RESNET_VARIANTS}),
    "bit": (BiTResNet, {f"R{d}x{k}": {"depth": d, "width": 64 * k} for d, k in _BIT_MODELS}),
    # Carion et al. 2020: the ResNet-50 and ResNet-101 DETRs (dim 256, 6+6 layers, 100 queries).
    "detr": (DETR, {f"R{depth}": {"backbone_depth": depth} for depth in (50, 101)}),
    # image_size defaults to 224 in the constructor.
    "vit": (ViT, dict(VIT_VARIANTS)),
    "mixer": (MlpMixer, dict(MIXER_VARIANTS)),
    # 32 frames of 224x224 by default, as in the paper.
    "vivit": (ViViT, dict(VIVIT_VARIANTS)),
    # Radford et al. 2021: the released ViT models, and a tiny one for tests.
    "clip": (_clip, dict(CLIP_VARIANTS)),
}


def _short(variant: str) -> str:
    """The short form of a variant in a model's name: `B/16` gives `b16`, `B/16x2` gives `b16x2`."""
    return variant.replace("/", "").lower()


ALIASES: dict[str, tuple[str, str]] = {
    "fully_connected": ("fully_connected", DEFAULT_VARIANT),
    "simple_cnn": ("simple_cnn", DEFAULT_VARIANT),
    "unet": ("unet", DEFAULT_VARIANT),
    **{f"resnet{depth}": ("resnet", str(depth)) for depth in (18, 34, 50, 101, 152)},
    **{f"bit_r{d}x{k}": ("bit", f"R{d}x{k}") for d, k in _BIT_MODELS},
    **{f"detr_r{depth}": ("detr", f"R{depth}") for depth in (50, 101)},
    "clip_vit_b32": ("clip", "ViT-B/32"),
    "clip_vit_b16": ("clip", "ViT-B/16"),
    "clip_vit_l14": ("clip", "ViT-L/14"),
    "clip_vit_l14_336": ("clip", "ViT-L/14@336px"),
    "clip_tiny": ("clip", "tiny"),
    **{
        f"{family}_{_short(v)}": (family, v)
        for family in ("vit", "mixer", "vivit")
        for v in FAMILIES[family][1]
    },
}
