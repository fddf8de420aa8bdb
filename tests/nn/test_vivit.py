import equinox as eqx
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from scenic_eqx import nn
from scenic_eqx.nn import ViViT

TINY = dict(
    num_classes=3,
    tubelet_size=(2, 4, 4),
    hidden_size=16,
    num_layers=2,
    num_heads=2,
    mlp_dim=32,
    num_frames=4,
    image_size=8,
)


@pytest.mark.parametrize(
    "attention_type, classifier, extra",
    [
        # (tests/nn/test_zoo.py covers the registered default: spacetime, token, no dropout.)
        ("spacetime", "gap", {"dropout_rate": 0.1, "stochastic_depth": 0.1}),
        ("factorized_encoder", "token", {"num_temporal_layers": 1, "attention_dropout_rate": 0.1}),
    ],
)
def test_tiny_finite_and_every_parameter_gets_a_gradient(getkey, attention_type, classifier, extra):
    model = ViViT(**TINY, attention_type=attention_type, classifier=classifier, **extra, key=getkey())
    videos = jax.random.normal(getkey(), (2, 4, 8, 8, 3))
    keys = jax.random.split(getkey(), 2)

    @eqx.filter_jit
    @eqx.filter_value_and_grad
    def loss(model, videos, keys):
        logits = jax.vmap(lambda x, k: model(x, key=k), axis_name="batch")(videos, keys)
        return jnp.sum(jnp.sin(logits))

    value, grads = loss(model, videos, keys)
    assert np.isfinite(value)
    leaves = jax.tree_util.tree_leaves_with_path(eqx.filter(grads, eqx.is_inexact_array))
    assert leaves
    for path, grad in leaves:
        assert np.all(np.isfinite(grad)), jax.tree_util.keystr(path)
        assert np.any(grad != 0), f"no gradient for {jax.tree_util.keystr(path)}"


@pytest.mark.parametrize(
    "attention_type, shapes",
    [
        # 2x2x2 tubelets + a class token in one encoder.
        ("spacetime", {"stem": (8, 16), "encoder_out": (9, 16), "pre_logits": (16,), "logits": (3,)}),
        # 2 time indices (+ a temporal class token) after the spatial encoder.
        (
            "factorized_encoder",
            {"stem": (8, 16), "encoder_out": (3, 16), "pre_logits": (16,), "logits": (3,)},
        ),
    ],
)
def test_features_inference_and_one_trace_per_shape(getkey, attention_type, shapes):
    model = eqx.nn.inference_mode(
        ViViT(**TINY, attention_type=attention_type, dropout_rate=0.5, key=getkey())
    )

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def features(model, x):
        return model.features(x)

    x = jax.random.normal(getkey(), (4, 8, 8, 3))
    out = features(model, x)
    again = features(model, x + 1)
    assert {k: v.shape for k, v in out.items()} == shapes
    np.testing.assert_allclose(out["pre_logits"], out["encoder_out"][0])
    assert not np.allclose(out["logits"], again["logits"])
    # Inference mode: no dropout, so the key changes nothing.
    np.testing.assert_allclose(model(x, key=getkey()), model(x), rtol=1e-6)


def test_spatial_encoder_sees_one_time_index_at_a_time(getkey):
    model = ViViT(**TINY, attention_type="factorized_encoder", num_temporal_layers=1, key=getkey())
    x = jax.random.normal(getkey(), (4, 8, 8, 3))
    y = x.at[2:].set(jax.random.normal(getkey(), (2, 8, 8, 3)))  # only the second tubelet slab

    # With the temporal encoder removed (an identity), the first time index's token is
    # unchanged: spatial attention never crosses time indices.
    def spatial_tokens(model, x):
        identity = eqx.tree_at(lambda m: m.temporal_encoder, model, lambda h, key=None: h)
        return identity.features(x)["encoder_out"]

    a, b = spatial_tokens(model, x), spatial_tokens(model, y)
    np.testing.assert_allclose(a[:2], b[:2], rtol=1e-5, atol=1e-6)  # class token, time 0
    assert not np.allclose(a[2], b[2])


def test_views_average_the_logits(getkey):
    model = ViViT(**TINY, key=getkey())
    views = jax.random.normal(getkey(), (3, 4, 8, 8, 3))
    expected = jnp.mean(jnp.stack([model(v) for v in views]), axis=0)
    np.testing.assert_allclose(eqx.filter_jit(model)(views), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(
        ValueError,
        match=r"one clip \(time, height, width, channels\) or its views .* Received: shape \(1, 2, 4, 8, 8, 3\).",
    ):
        model(jnp.ones((1, 2, 4, 8, 8, 3)))


def test_registry_b16x2_parameter_count():
    # ViT-B/16 at 224 with 1000 classes has 86,567,656 parameters (test_vit). ViViT-B/16x2
    # on 32 frames adds a second tubelet frame to the embedding (768 x 3 x 16 x 16), 2,940
    # more position embeddings (16 x 14 x 14 + 1 instead of 14 x 14 + 1) and has 600 fewer
    # classes (400, Kinetics-400).
    expected = 86_567_656 + 768 * 3 * 16 * 16 + (3137 - 197) * 768 - 600 * (768 + 1)
    model = eqx.filter_eval_shape(nn.create, "vivit_b16x2", num_classes=400, key=jax.random.key(0))
    leaves = [x for x in jax.tree.leaves(model) if isinstance(x, jax.ShapeDtypeStruct)]
    assert sum(x.size for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact)) == expected == 88_954_000
    assert model.input_size == (32, 224, 224) and model.embedding.tubelet_size == (2, 16, 16)
    assert nn.VIVIT_VARIANTS["H/14x2"]["tubelet_size"] == (2, 14, 14)


def test_errors(getkey):
    with pytest.raises(ValueError, match=r"Unknown `attention_type` \(='factorised'\)"):
        ViViT(**TINY, attention_type="factorised", key=getkey())
    with pytest.raises(ValueError, match=r"Unknown `classifier` \(='map'\)"):
        ViViT(**TINY, classifier="map", key=getkey())
    with pytest.raises(ValueError, match=r"`hidden_size` \(=15\) must be divisible by `num_heads` \(=2\)"):
        ViViT(**{**TINY, "hidden_size": 15}, key=getkey())
    with pytest.raises(
        ValueError, match=r"The video size must be divisible by `tubelet_size` \(=2x4x4\). Received: 5x8x8."
    ):
        ViViT(**{**TINY, "num_frames": 5}, key=getkey())
    model = ViViT(**TINY, key=getkey())
    with pytest.raises(
        ValueError,
        match=r"must have size 4 on its `time` axis .* from `num_frames` x `image_size` \(=4x8x8\). Received: shape \(6, 8, 8, 3\).",
    ):
        model(jnp.ones((6, 8, 8, 3)))
    with pytest.raises(jaxtyping.TypeCheckError):
        model(jnp.ones((8, 8, 3)))
