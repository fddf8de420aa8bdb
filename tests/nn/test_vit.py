import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from scenic_eqx import nn
from scenic_eqx.nn import ViT

# LLVM optimisation off: these small programs compile about twice as fast, and the
# tests check values, not speed.
_jit = functools.partial(eqx.filter_jit, compiler_options={"xla_backend_optimization_level": 0})

TINY = {
    "num_classes": 3,
    "patch_size": 8,
    "hidden_size": 16,
    "num_layers": 2,
    "num_heads": 2,
    "mlp_dim": 32,
    "image_size": 16,
}


@pytest.mark.parametrize(
    "classifier, posemb, extra",
    [
        # Dropout itself is tested with the layers; here stochastic depth is on in layer 2.
        ("token", "learn", {"stochastic_depth": 0.1}),
        ("gap", "sincos2d", {"representation_size": 8, "scan_layers": True}),
        ("map", "learn", {}),
        # Three heads of 4 on 16-wide tokens (16 is not divisible by 3).
        ("gap", "none", {"num_heads": 3, "head_dim": 4}),
        ("map", "sincos1d", {"num_heads": 3, "head_dim": 8}),
    ],
)
def test_tiny_finite_and_every_parameter_gets_a_gradient(getkey, classifier, posemb, extra):
    model = ViT(**{**TINY, **extra}, classifier=classifier, posemb=posemb, key=getkey())
    images = jax.random.normal(getkey(), (2, 16, 16, 3))
    keys = jax.random.split(getkey(), 2)

    @_jit
    @eqx.filter_value_and_grad
    def loss(model, images, keys):
        logits = jax.vmap(lambda x, k: model(x, key=k))(images, keys)
        return jnp.sum(jnp.sin(logits))

    value, grads = loss(model, images, keys)
    assert np.isfinite(value)
    leaves = jax.tree_util.tree_leaves_with_path(eqx.filter(grads, eqx.is_inexact_array))
    assert leaves
    for path, grad in leaves:
        assert np.all(np.isfinite(grad)), jax.tree_util.keystr(path)
        assert np.any(grad != 0), f"no gradient for {jax.tree_util.keystr(path)}"


def test_features_inference_and_one_trace_per_shape(getkey):
    model = eqx.nn.inference_mode(ViT(**TINY, dropout_rate=0.5, key=getkey()))

    @_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def features(model, x):
        return jax.vmap(model.features)(x)

    x = jax.random.normal(getkey(), (2, 16, 16, 3))
    out = features(model, x)
    features(model, x + 1)
    assert {k: v.shape for k, v in out.items()} == {
        "stem": (2, 4, 16),
        "encoder_out": (2, 5, 16),
        "pre_logits": (2, 16),
        "logits": (2, 3),
    }
    assert out["logits"].dtype == jnp.float32
    np.testing.assert_allclose(out["pre_logits"], out["encoder_out"][:, 0])


def test_names_for_weight_import(getkey):
    model = ViT(**TINY, key=getkey())
    block = model.encoder.blocks[1]
    shapes = {
        "embedding.weight": (model.embedding.weight.shape, (16, 3, 8, 8)),
        "cls_token": (model.cls_token.shape, (1, 16)),
        "pos_embedding.weight": (model.pos_embedding.weight.shape, (5, 16)),
        "attention.query": (block.attention.query.weight.shape, (16, 16)),
        "attention.out": (block.attention.out.weight.shape, (16, 16)),
        "mlp.dense1": (block.mlp.dense1.weight.shape, (32, 16)),
        "encoder.norm": (model.encoder.norm.weight.shape, (16,)),
        "head": (model.head.weight.shape, (3, 16)),
    }
    for name, (got, expected) in shapes.items():
        assert got == expected, name


def test_head_dim_sets_the_attention_width(getkey):
    model = ViT(**{**TINY, "num_heads": 3}, head_dim=8, classifier="map", key=getkey())
    for attention in (model.encoder.blocks[0].attention, model.map_head.attention):
        assert attention.query.weight.shape == (24, 16) and attention.key.weight.shape == (24, 16)
        assert attention.out.weight.shape == (16, 24)
    logits = eqx.filter_eval_shape(model, jnp.zeros((16, 16, 3)))
    assert logits.shape == (3,)


def _swap_patches(images):
    """The 2x2 grid of 8x8 patches of each 16x16 image, in reverse row-major order."""
    patches = images.reshape(-1, 2, 8, 2, 8, 3)[:, ::-1, :, ::-1]
    return patches.reshape(-1, 16, 16, 3)


@pytest.mark.parametrize("posemb", ["none", "sincos1d", "sincos2d", "learn"])
def test_only_a_position_embedding_tells_patches_apart(getkey, posemb):
    # Mean-pooled, a ViT without position embedding is blind to the order of the patches.
    model = ViT(**TINY, classifier="gap", posemb=posemb, key=getkey())
    images = jax.random.normal(getkey(), (2, 16, 16, 3))
    logits = _jit(lambda m, x: jax.vmap(m)(x))
    same = np.allclose(logits(model, images), logits(model, _swap_patches(images)), rtol=1e-5, atol=1e-6)
    assert same == (posemb == "none")


def test_sincos1d_embeds_the_patch_index_after_the_class_token(getkey):
    model = ViT(**TINY, posemb="sincos1d", key=getkey())
    # Four patches (2x2) after the class token, which gets nothing.
    added = np.asarray(model.pos_embedding(jnp.zeros((5, 16))))
    np.testing.assert_array_equal(added[0], np.zeros(16))
    np.testing.assert_allclose(added[1:], nn.posemb_sincos_1d(4, 16), rtol=1e-6)
    assert ViT(**TINY, posemb="none", key=getkey()).pos_embedding is None


def test_registry_b16_has_the_published_parameter_count():
    # ViT-B/16 at 224 with 1000 classes: 86,567,656 parameters (as timm's vit_base_patch16_224).
    model = eqx.filter_eval_shape(nn.create, "vit_b16", num_classes=1000, key=jax.random.key(0))
    leaves = [x for x in jax.tree.leaves(model) if isinstance(x, jax.ShapeDtypeStruct)]
    sizes = [x.size for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact)]
    assert sum(sizes) == 86_567_656
    for name in ["vit_ti16", "vit_s16", "vit_s32", "vit_b32", "vit_l16", "vit_h14"]:
        assert name in nn.list_models()


def test_errors(getkey):
    tiny = dict(TINY)
    with pytest.raises(ValueError, match=r"`hidden_size` \(=16\) must be divisible by `num_heads` \(=3\)"):
        ViT(**{**tiny, "num_heads": 3}, key=getkey())
    with pytest.raises(ValueError, match=r"`image_size` \(=20\) must be divisible by `patch_size` \(=8\)"):
        ViT(**{**tiny, "image_size": 20}, key=getkey())
    with pytest.raises(
        ValueError, match=r"Unknown `classifier` \(='cls'\); choose from \('token', 'gap', 'map'\)"
    ):
        ViT(**tiny, classifier="cls", key=getkey())
    with pytest.raises(
        ValueError, match=r"Unknown `posemb` \(='sincos'\); choose from \('learn', 'sincos1d'"
    ):
        ViT(**tiny, posemb="sincos", key=getkey())
    with pytest.raises(ValueError, match=r"`hidden_size` \(=16\) must be divisible .*, or give `head_dim`"):
        ViT(**{**tiny, "num_heads": 3}, key=getkey())
    with pytest.raises(ValueError, match=r"`head_dim` must be a positive integer\. Received: 0\."):
        ViT(**tiny, head_dim=0, key=getkey())
    with pytest.raises(ValueError, match=r"`dim` \(=15\) must be even for the sine-cosine embedding"):
        ViT(**{**tiny, "hidden_size": 15, "num_heads": 3}, posemb="sincos1d", key=getkey())
    model = ViT(**tiny, key=getkey())
    with pytest.raises(
        ValueError,
        match=r"`x` \(the input of ViT\) must have size 16 on its `height` axis \(axis 0 of \(height, width, channels\)\), from `image_size` \(=16x16\). Received: shape \(24, 24, 3\).",
    ):
        model(jnp.ones((24, 24, 3)))
    with pytest.raises(jaxtyping.TypeCheckError, match="height width channels"):
        model(jnp.ones((2, 16, 16, 3)))
