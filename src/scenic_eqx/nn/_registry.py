"""Models by family and variant: `create("vit", variant="B/16", num_classes=10, key=key)`.

A family is one constructor with a table of variants (the keyword arguments of each
published configuration); `create`'s overrides replace any of them. The defaults
themselves live in the constructors. Each short name of `list_models()` ("vit_b16",
"resnet50", ...) is an alias of one (family, variant): `create("vit_b16", ...)` builds
the same model. `register` adds a user's model as a family of one variant.
"""

import difflib
import inspect
import numbers
from collections.abc import Callable
from typing import Any

import equinox as eqx
from jaxtyping import PRNGKeyArray

from ._model_families import ALIASES, DEFAULT_VARIANT, FAMILIES

_FAMILIES: dict[str, tuple[Callable[..., eqx.Module], dict[str, dict[str, Any]]]] = {
    family: (constructor, dict(variants)) for family, (constructor, variants) in FAMILIES.items()
}
_ALIASES: dict[str, tuple[str, str]] = dict(ALIASES)


def list_models() -> list[str]:
    """The registered model names (each an alias of a family's variant), sorted."""
    return sorted(_ALIASES)


def list_families() -> list[str]:
    """The registered model families, sorted: the built-in ones and those `register` added."""
    return sorted(_FAMILIES)


def list_variants(family: str) -> list[str]:
    """The variants of model family `family`, in the order of its table.

    Raises:
        ValueError: `family` is not a registered family.
    """
    return list(_FAMILIES[_check_family(family, "family")][1])


def _check_family(family: object, argument: str) -> str:
    if not isinstance(family, str) or family not in _FAMILIES:
        close = difflib.get_close_matches(str(family), _FAMILIES, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown model family `{argument}`.{hint} Known families: {', '.join(list_families())}. "
            f"Received: {family!r}."
        )
    return family


def _resolve(name: object, variant: object) -> tuple[str, str]:
    """The (family, variant) that `create(name, variant=variant)` builds."""
    if variant is None and isinstance(name, str) and name in _ALIASES:
        return _ALIASES[name]
    if not isinstance(name, str) or name not in _FAMILIES:
        if isinstance(name, str) and name in _ALIASES:
            raise ValueError(
                f"`name` {name!r} names one variant already ({_ALIASES[name][1]!r} of family "
                f"{_ALIASES[name][0]!r}), so `variant` must be omitted; or pass the family as `name`. "
                f"Received: name={name!r}, variant={variant!r}."
            )
        close = difflib.get_close_matches(str(name), [*_ALIASES, *_FAMILIES], n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown model `name`.{hint} Known families: {', '.join(list_families())}; known models: "
            f"{', '.join(list_models())}. Received: {name!r}."
        )
    variants = _FAMILIES[name][1]
    if variant is None and len(variants) == 1:
        return name, next(iter(variants))
    if not isinstance(variant, str) or variant not in variants:
        close = difflib.get_close_matches(str(variant), variants, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"`variant` must be one of the variants of model family {name!r}: "
            f"{', '.join(map(repr, variants))}.{hint} Received: {variant!r}."
        )
    return name, variant


def _lookup(name: str, variant: str | None = None) -> tuple[Callable[..., eqx.Module], dict[str, Any]]:
    """The constructor and variant keyword arguments that `create(name, variant=variant)` uses."""
    family, variant = _resolve(name, variant)
    constructor, variants = _FAMILIES[family]
    return constructor, dict(variants[variant])


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
    call, `nn.register("my_net", MyNet, depth=4)`. `name` becomes a family of one
    variant (`variant_kwargs`), listed by `list_models()` and `list_families()`.

    Arguments:
        name: the model's name in `list_models()`.
        constructor: a model class, or a function returning a model, that takes the
            keyword arguments `num_classes` and `key` (as `create` passes them); omitted
            when used as a decorator.
        overwrite: replace an entry already registered under `name` (else an error).
            Replacing a built-in family also drops the names aliasing its variants.
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
    if (name in _ALIASES or name in _FAMILIES) and not overwrite:
        family = _ALIASES[name][0] if name in _ALIASES else name
        taken = getattr(_FAMILIES[family][0], "__name__", _FAMILIES[family][0])
        raise ValueError(
            f"A model is already registered as {name!r} ({taken}); pass "
            f"`overwrite=True` to replace it. Received: name={name!r}."
        )

    def add(constructor: Callable[..., eqx.Module]) -> Callable[..., eqx.Module]:
        _check_constructor(name, constructor, variant_kwargs)
        for alias, (family, _) in list(_ALIASES.items()):
            if family == name:  # its variants are replaced: no alias may point at them
                del _ALIASES[alias]
        _FAMILIES[name] = (constructor, {DEFAULT_VARIANT: dict(variant_kwargs)})
        _ALIASES[name] = (name, DEFAULT_VARIANT)
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
    num_classes: int | None,
    key: PRNGKeyArray,
    variant: str | None = None,
    weights: str | None = None,
    **overrides: Any,
) -> eqx.Module:
    """Builds a registered model: a family's variant, or the model a short name aliases.

    `create("vit", variant="B/16", ...)` and `create("vit_b16", ...)` build the same model.

    Arguments:
        name: a family from `list_families()` or a name from `list_models()`.
        num_classes: number of output logits; `None` for a model without a classifier
            head (CLIP, which also ignores a number given by the runner).
        key: PRNG key for initialisation.
        variant: with a family `name`, one of `list_variants(name)`; may be omitted for a
            family of one variant. Omitted with a short name, which names its variant.
        weights: optional path of pretrained weights to load into the model.
        **overrides: constructor arguments replacing the variant's.

    Returns:
        The model, an `eqx.Module` acting on one example. A model with BatchNorm holds
        its initial state: `eqx.nn.State(model)` builds it (`loops.fit` does so).

    Raises:
        ValueError: an unknown `name` or `variant`, a `num_classes` that is not a positive
            integer, or an override the constructor does not take.
    """
    constructor, variant_kwargs = _lookup(name, variant)
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1
    ):
        raise ValueError(f"`num_classes` must be a positive integer. Received: {num_classes!r}.")
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
    model = constructor(num_classes=num_classes, **{**variant_kwargs, **overrides}, key=key)
    if weights is not None:
        from ._weights import load_weights

        model = load_weights(model, weights)
    return model
