"""`nn.create(family, variant=...)`: every short name aliases one family's variant, and the errors."""

import equinox as eqx
import jax
import numpy as np
import pytest

from scenic_eqx import nn
from scenic_eqx.nn import _registry

# Today's short names, spelled out: configs and tests name models by them.
SHORT_NAMES = {
    "fully_connected": ("fully_connected", "default"),
    "simple_cnn": ("simple_cnn", "default"),
    "unet": ("unet", "default"),
    **{f"resnet{d}": ("resnet", str(d)) for d in (18, 34, 50, 101, 152)},
    **{f"bit_r{v[1:].lower()}": ("bit", v) for v in ("R50x1", "R50x3", "R101x1", "R101x3", "R152x2")},
    "detr_r50": ("detr", "R50"),
    "detr_r101": ("detr", "R101"),
    **{
        f"vit_{size.lower()}{patch}": ("vit", f"{size}/{patch}")
        for size in ("Ti", "S", "B", "L", "H")
        for patch in (8, 14, 16, 32)
    },
    **{
        f"mixer_{v.replace('/', '').lower()}": ("mixer", v)
        for v in ("S/16", "S/32", "B/16", "B/32", "L/16", "L/32", "H/14")
    },
    **{
        f"vivit_{v.replace('/', '').lower()}": ("vivit", v)
        for v in ("Ti/16x2", "S/16x2", "B/16x2", "L/16x2", "H/14x2")
    },
    "clip_vit_b32": ("clip", "ViT-B/32"),
    "clip_vit_b16": ("clip", "ViT-B/16"),
    "clip_vit_l14": ("clip", "ViT-L/14"),
    "clip_vit_l14_336": ("clip", "ViT-L/14@336px"),
    "clip_tiny": ("clip", "tiny"),
}


def _abstract(name, variant=None):
    """The model `create` builds, as `jax.ShapeDtypeStruct` leaves (nothing initialised)."""
    kwargs = {"num_classes": 3, "key": jax.random.key(0)}
    if name == "fully_connected":  # Its constructor computes with a concrete input shape: build a tiny one.
        model = nn.create(name, variant=variant, input_shape=(4, 4, 1), hidden_sizes=(2,), **kwargs)
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if eqx.is_array(x) else x, model)
    return eqx.filter_eval_shape(nn.create, name, variant=variant, **kwargs)


def _shapes(model):
    """Each array of the model, by its path in the tree: its shape and dtype."""
    is_abstract = lambda x: isinstance(x, jax.ShapeDtypeStruct)  # noqa: E731
    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(model, is_abstract))[0]
    assert leaves and all(is_abstract(x) for _, x in leaves)
    return [(jax.tree_util.keystr(path), x.shape, x.dtype) for path, x in leaves]


def test_list_models_keeps_the_short_names():
    # Projects register their models in the same registry: only the library's are counted.
    library = lambda names: [n for n in names if _registry._lookup(n)[0].__module__.startswith("scenic_eqx.")]
    assert library(nn.list_models()) == sorted(SHORT_NAMES)
    families = [
        f for f in nn.list_families() if _registry._FAMILIES[f][0].__module__.startswith("scenic_eqx.")
    ]
    assert families == sorted(
        ["bit", "clip", "detr", "fully_connected", "mixer", "resnet", "simple_cnn", "unet", "vit", "vivit"]
    )


@pytest.mark.parametrize("name", sorted(SHORT_NAMES))
def test_every_short_name_resolves_to_its_family_and_variant(name):
    family, variant = SHORT_NAMES[name]
    assert variant in nn.list_variants(family)
    assert _registry._lookup(name) == _registry._lookup(family, variant)


# One alias per family, built both ways; the smallest variant keeps it quick.
@pytest.mark.parametrize(
    "name",
    [
        "fully_connected",
        "simple_cnn",
        "unet",
        "resnet18",
        "bit_r50x1",
        "detr_r50",
        "vit_ti16",
        "mixer_s32",
        "vivit_ti16x2",
        "clip_tiny",
    ],
)
def test_alias_builds_the_model_of_its_family_and_variant(name):
    family, variant = SHORT_NAMES[name]
    alias_model = _abstract(name)
    family_model = _abstract(family, variant)
    assert type(alias_model) is type(family_model)
    assert _shapes(alias_model) == _shapes(family_model)


def test_variants_build_different_models():
    # The comparison above would pass vacuously if the variant were ignored.
    small, base = _shapes(_abstract("vit", "Ti/16")), _shapes(_abstract("vit", "B/16"))
    assert small != base
    assert _shapes(_abstract("vit_b16")) == base
    params = sum(int(np.prod(shape)) for _, shape, _ in base)
    # ViT-B/16 has 86,567,656 parameters with a 1000-class head (768 x 1000 + 1000); here 3 classes.
    assert params == 86_567_656 - 997 * (768 + 1)


def test_variant_tables_follow_the_constructors_tables():
    assert nn.list_variants("vit") == list(nn.VIT_VARIANTS)
    assert nn.list_variants("mixer") == list(nn.MIXER_VARIANTS)
    assert nn.list_variants("vivit") == list(nn.VIVIT_VARIANTS)
    assert nn.list_variants("clip") == list(nn.CLIP_VARIANTS)
    assert nn.list_variants("resnet") == [str(depth) for depth in nn.RESNET_VARIANTS]
    assert nn.list_variants("unet") == ["default"]


def test_family_of_one_variant_needs_no_variant():
    assert _shapes(_abstract("unet", "default")) == _shapes(_abstract("unet"))


def test_unknown_family():
    with pytest.raises(
        ValueError,
        match=r"Unknown model `name`\. Did you mean 'vit'.*Known families: bit, .* Received: 'vitt'\.",
    ):
        nn.create("vitt", variant="B/16", num_classes=3, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"Unknown model family `family`\. .*Received: 'vitt'\."):
        nn.list_variants("vitt")


def test_unknown_variant(without_annotation_checks):
    with pytest.raises(
        ValueError,
        match=r"`variant` must be one of the variants of model family 'vit': 'Ti/8', .*'H/32'\. "
        r"Did you mean 'B/16'.* Received: 'B/17'\.",
    ):
        nn.create("vit", variant="B/17", num_classes=3, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"family 'resnet': '18', .* Received: 50\."):
        nn.create("resnet", variant=50, num_classes=3, key=jax.random.key(0))


def test_family_of_several_variants_needs_a_variant():
    with pytest.raises(ValueError, match=r"variants of model family 'mixer': 'S/16', .* Received: None\."):
        nn.create("mixer", num_classes=3, key=jax.random.key(0))


def test_short_name_takes_no_variant():
    with pytest.raises(
        ValueError,
        match=r"`name` 'vit_b16' names one variant already \('B/16' of family 'vit'\), so `variant` must "
        r"be omitted.* Received: name='vit_b16', variant='B/32'\.",
    ):
        nn.create("vit_b16", variant="B/32", num_classes=3, key=jax.random.key(0))


class _Affine(eqx.Module):
    scale: float

    def __init__(self, *, num_classes, scale=1.0, key):
        self.scale = scale


@pytest.fixture
def restored_registry(monkeypatch):
    monkeypatch.setattr(_registry, "_FAMILIES", dict(_registry._FAMILIES))
    monkeypatch.setattr(_registry, "_ALIASES", dict(_registry._ALIASES))


def test_registered_model_is_a_family_of_one_variant(restored_registry):
    nn.register("affine", _Affine, scale=2.0)
    assert "affine" in nn.list_models() and "affine" in nn.list_families()
    assert nn.list_variants("affine") == ["default"]
    assert nn.create("affine", variant="default", num_classes=1, key=jax.random.key(0)).scale == 2.0
    assert nn.create("affine", num_classes=1, key=jax.random.key(0)).scale == 2.0


def test_replacing_a_family_drops_its_aliases(restored_registry):
    with pytest.raises(ValueError, match=r"already registered as 'vit' \(ViT\)"):
        nn.register("vit", _Affine)
    nn.register("vit", _Affine, overwrite=True)
    assert not any(name.startswith("vit_") for name in nn.list_models())
    assert nn.list_variants("vit") == ["default"]
    assert isinstance(nn.create("vit", num_classes=1, key=jax.random.key(0)), _Affine)
    # Another family's aliases are untouched.
    assert "vivit_b16x2" in nn.list_models()
