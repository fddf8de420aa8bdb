"""Models by name: `create("vit_s16", num_classes=10, key=key)`; `register` adds one.

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


def register(
    name: str,
    constructor: Callable[..., eqx.Module] | None = None,
    /,
    *,
    overwrite: bool = False,
    **variant_kwargs: Any,
):
    """Registers a model under `name`, so that configs and `create` find it.

    As a decorator, `@nn.register("my_net", depth=4)` on a class or a function; as a
    call, `nn.register("my_net", MyNet, depth=4)`.

    Arguments:
        name: the model's name in `list_models()`.
        constructor: a model class, or a function returning a model, that takes the
            keyword arguments `num_classes` and `key` (as `create` passes them); omitted
            when used as a decorator.
        overwrite: replace an entry already registered under `name` (else an error).
        **variant_kwargs: constructor arguments of this variant; `create`'s overrides
            replace them.

    Returns:
        `constructor` (or, as a decorator, a function registering and returning it).

    Raises:
        ValueError: `name` is not a non-empty string or is taken, `constructor` is not
            callable or lacks `num_classes`, `key` or one of `variant_kwargs`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string. Received: {name!r}.")
    if name in _MODELS and not overwrite:
        raise ValueError(
            f"A model is already registered as {name!r} ({getattr(_MODELS[name][0], '__name__', _MODELS[name][0])}); pass "
            f"`overwrite=True` to replace it. Received: name={name!r}."
        )

    def add(constructor: Callable[..., eqx.Module]) -> Callable[..., eqx.Module]:
        _check_constructor(name, constructor, variant_kwargs)
        _MODELS[name] = (constructor, dict(variant_kwargs))
        return constructor

    return add if constructor is None else add(constructor)


def _check_constructor(name: str, constructor: object, variant_kwargs: dict[str, Any]) -> None:
    if not callable(constructor):
        raise ValueError(
            f"`constructor` of model {name!r} must be callable: a model class, or a function "
            f"returning a model. Received: {constructor!r} of type {type(constructor).__name__}."
        )
    try:
        parameters = inspect.signature(constructor).parameters
    except (TypeError, ValueError):  # no signature to check: the first `create` will
        return
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return
    missing = [a for a in ("num_classes", "key", *variant_kwargs) if a not in parameters]
    if missing:
        raise ValueError(
            f"`constructor` of model {name!r} must take the keyword arguments `num_classes` and "
            f"`key` (as `create` passes them) and those of the variant. Received: "
            f"{getattr(constructor, '__name__', constructor)}{inspect.signature(constructor)}, "
            f"without {', '.join(map(repr, missing))}."
        )


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
            f"Unknown model `name`.{hint} Known models: {', '.join(list_models())}. Received: {name!r}."
        )
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1
    ):
        raise ValueError(f"`num_classes` must be a positive integer. Received: {num_classes!r}.")
    constructor, variant = _MODELS[name]
    accepted = inspect.signature(constructor).parameters
    open_ended = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
    valid = [
        a for a, p in accepted.items() if a not in ("self", "num_classes", "key") and p.kind != p.VAR_KEYWORD
    ]
    for argument in overrides:
        if argument not in valid and not open_ended:
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
