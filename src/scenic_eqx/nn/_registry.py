"""Models by name: `create("vit_s16", num_classes=10, key=key)`.

Each entry pairs a constructor with the keyword arguments of its variant; `create`'s
overrides replace any of them. The defaults themselves live in the constructors.
"""

import difflib
import inspect
import numbers
from collections.abc import Callable
from typing import Any

import equinox as eqx
from jaxtyping import PRNGKeyArray

from ._bit import BiTResNet
from ._detr import DETR
from ._fully_connected import FullyConnected
from ._mixer import MIXER_VARIANTS, MlpMixer
from ._resnet import ResNet
from ._simple_cnn import SimpleCNN
from ._unet import UNet
from ._vit import VIT_VARIANTS, ViT
from ._vivit import VIVIT_VARIANTS, ViViT

_MODELS: dict[str, tuple[Callable[..., eqx.Module], dict[str, Any]]] = {
    "fully_connected": (FullyConnected, {}),
    "simple_cnn": (SimpleCNN, {}),
    **{f"resnet{depth}": (ResNet, {"depth": depth}) for depth in (18, 34, 50, 101, 152)},
    # BiT's width factor k is `width=64 * k`: "R50x3" -> "bit_r50x3".
    **{
        f"bit_r{depth}x{k}": (BiTResNet, {"depth": depth, "width": 64 * k})
        for depth, k in ((50, 1), (50, 3), (101, 1), (101, 3), (152, 2))
    },
    "unet": (UNet, {}),
    # Carion et al. 2020: the ResNet-50 and ResNet-101 DETRs (dim 256, 6+6 layers, 100 queries).
    **{f"detr_r{depth}": (DETR, {"backbone_depth": depth}) for depth in (50, 101)},
    # "B/16" -> "vit_b16"; image_size defaults to 224 in the constructor.
    **{f"vit_{v.replace('/', '').lower()}": (ViT, kw) for v, kw in VIT_VARIANTS.items()},
    **{f"mixer_{v.replace('/', '').lower()}": (MlpMixer, kw) for v, kw in MIXER_VARIANTS.items()},
    # "B/16x2" -> "vivit_b16x2"; 32 frames of 224x224 by default, as in the paper.
    **{f"vivit_{v.replace('/', '').lower()}": (ViViT, kw) for v, kw in VIVIT_VARIANTS.items()},
}


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_MODELS)


def create(
    name: str,
    *,
    num_classes: int,
    key: PRNGKeyArray,
    weights: str | None = None,
    **overrides: Any,
) -> eqx.Module:
    """Builds the registered model `name`.

    Arguments:
        name: a name from `list_models()`.
        num_classes: number of output logits.
        key: PRNG key for initialisation.
        weights: optional path of pretrained weights to load into the model.
        **overrides: constructor arguments replacing the variant's.

    Returns:
        The model, an `eqx.Module` acting on one example. A model with BatchNorm holds
        its initial state: `eqx.nn.State(model)` builds it (`loops.fit` does so).
    """
    if not isinstance(name, str) or name not in _MODELS:
        close = difflib.get_close_matches(str(name), _MODELS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown model `name`.{hint} Known models: {', '.join(list_models())}. "
            f"Received: {name!r}."
        )
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
        or num_classes < 1
    ):
        raise ValueError(f"`num_classes` must be a positive integer. Received: {num_classes!r}.")
    constructor, variant = _MODELS[name]
    accepted = inspect.signature(constructor).parameters
    valid = [a for a in accepted if a not in ("self", "num_classes", "key")]
    for argument in overrides:
        if argument not in valid:
            close = difflib.get_close_matches(argument, valid, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"`{name}` takes the arguments: {', '.join(valid)}.{hint} Received: unknown "
                f"argument {argument!r}."
            )
    model = constructor(num_classes=num_classes, **{**variant, **overrides}, key=key)
    if weights is not None:
        from ._weights import load_weights

        model = load_weights(model, weights)
    return model
