"""`nn.CLIP` and its towers: outputs, causal text pooling, variants, the registry, training, errors.

Parity with the reference implementations is in `test_clip_weights.py`.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scenic_eqx import loops, nn, tasks

# The architecture of the weight fixtures: 32x32 images in 16 patches, towers of other
# widths and heads, 50 token ids, 10 per text.
SMALL = {
    "embed_dim": 8,
    "image_size": 32,
    "patch_size": 8,
    "vision_width": 24,
    "vision_layers": 2,
    "vision_heads": 3,
    "vocab_size": 50,
    "context_length": 10,
    "text_width": 16,
    "text_layers": 2,
    "text_heads": 2,
}
START, END = 48, 49  # CLIP puts the special tokens last: <|endoftext|> is the largest id.


def text(*words: int) -> jax.Array:
    """`[START, words..., END, 0, ...]`, padded to the context length."""
    ids = [START, *words, END]
    return jnp.asarray(ids + [0] * (SMALL["context_length"] - len(ids)), jnp.int32)


@pytest.fixture(scope="module")
def model():
    return nn.CLIP(**SMALL, key=jax.random.key(0))


@pytest.fixture(scope="module")
def encode_text(model):
    return eqx.filter_jit(model.encode_text)


@pytest.fixture(scope="module")
def encode_image(model):
    return eqx.filter_jit(model.encode_image)


def test_outputs_of_a_batch(model, encode_image, encode_text):
    images = jax.random.normal(jax.random.key(1), (3, 32, 32, 3))
    texts = jnp.stack([text(1, 2), text(3), text(4, 5, 6)])
    out = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(model, {"image": images, "text": texts})
    assert out["image_embedding"].shape == (3, 8) and out["text_embedding"].shape == (3, 8)
    assert out["image_embedding"].dtype == out["text_embedding"].dtype == jnp.float32
    # The learned temperature starts at 1 / 0.07 (Radford et al. 2021, section 2.5).
    np.testing.assert_allclose(out["logit_scale"], np.full(3, math.log(1 / 0.07)), rtol=1e-6)
    np.testing.assert_allclose(out["image_embedding"][1], encode_image(images[1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["text_embedding"][2], encode_text(texts[2]), rtol=1e-5, atol=1e-6)
    # Not normalised, and different inputs give different embeddings.
    assert not np.allclose(np.linalg.norm(out["image_embedding"], axis=-1), 1.0)
    assert not np.allclose(out["text_embedding"][0], out["text_embedding"][1])


def test_text_after_the_end_cannot_change_the_embedding(encode_text):
    """Causal attention: the output at the end-of-text position sees only the tokens before it."""
    base = encode_text(text(1, 2, 3))
    after = text(1, 2, 3).at[6:].set(jnp.asarray([7, 8, 9, 10], jnp.int32))
    np.testing.assert_allclose(encode_text(after), base, rtol=1e-6, atol=1e-7)
    # The same sequence cut after its end: shorter contexts are taken.
    np.testing.assert_allclose(encode_text(text(1, 2, 3)[:5]), base, rtol=1e-5, atol=1e-6)
    # A token before the end does change it.
    assert not np.allclose(encode_text(text(1, 4, 3)), base, atol=1e-3)


def test_pooled_at_the_largest_id_or_at_the_first_eos_token_id():
    sizes = {"embed_dim": 8, "vocab_size": 50, "context_length": 10, "width": 16, "num_layers": 1}
    openai = nn.CLIPTextTransformer(**sizes, num_heads=2, key=jax.random.key(2))
    transformers = nn.CLIPTextTransformer(**sizes, num_heads=2, eos_token_id=7, key=jax.random.key(2))
    embed = eqx.filter_jit(lambda tower, tokens: tower(tokens))
    # The end-of-text id 7 is not the largest id: the two rules pool at different places.
    tokens = jnp.asarray([6, 30, 7, 45, 7, 7, 7, 7, 7, 7], jnp.int32)
    assert int(openai.end_of_text(tokens)) == 3 and int(transformers.end_of_text(tokens)) == 2
    np.testing.assert_allclose(
        embed(transformers, tokens), embed(transformers, tokens[:3]), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(embed(openai, tokens), embed(openai, tokens[:4]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(embed(openai, tokens), embed(transformers, tokens), atol=1e-3)


def test_quick_gelu():
    x = jnp.asarray([-2.0, 0.0, 1.0])
    # x * sigmoid(1.702 x): sigmoid(1.702) = 0.8457958, sigmoid(-3.404) = 0.0321707.
    np.testing.assert_allclose(nn.quick_gelu(x), [-2 * 0.0321707, 0.0, 0.8457958], rtol=1e-5)
    mlp = nn.MlpBlock(4, 8, quick_gelu=True, key=jax.random.key(3))
    h = jnp.ones((2, 4))
    hidden = nn.quick_gelu(h @ mlp.dense1.weight.T + mlp.dense1.bias[None])
    expected = hidden @ mlp.dense2.weight.T + mlp.dense2.bias[None]
    np.testing.assert_allclose(mlp(h), expected, rtol=1e-5, atol=1e-6)


def test_variants_have_the_published_sizes():
    """Parameter counts of open_clip's `ViT-B-32`, `ViT-B-16`, `ViT-L-14` and `ViT-L-14-336`."""
    published = {
        "ViT-B/32": 151_277_313,
        "ViT-B/16": 149_620_737,
        "ViT-L/14": 427_616_513,
        "ViT-L/14@336px": 427_944_193,
    }
    for variant, count in published.items():
        # Scanned blocks: the same parameters, stacked, traced in a fraction of the time.
        build = {**nn.CLIP_VARIANTS[variant], "scan_layers": True}
        abstract = eqx.filter_eval_shape(nn.CLIP, **build, key=jax.random.key(0))
        params = eqx.filter(abstract, lambda x: isinstance(x, jax.ShapeDtypeStruct))
        assert sum(math.prod(x.shape) for x in jax.tree.leaves(params)) == count, variant


def test_registry_builds_the_variants():
    expected = {
        "clip_vit_b32": "ViT-B/32",
        "clip_vit_b16": "ViT-B/16",
        "clip_vit_l14": "ViT-L/14",
        "clip_vit_l14_336": "ViT-L/14@336px",
        "clip_tiny": "tiny",
    }
    assert [name for name in nn.list_models() if name.startswith("clip")] == sorted(expected)
    assert nn.list_variants("clip") == list(nn.CLIP_VARIANTS)
    # The runner passes every model the dataset's `num_classes`: a dual encoder has no head.
    built = eqx.filter_eval_shape(
        nn.create, "clip_tiny", num_classes=10, key=jax.random.key(0), vocab_size=64
    )
    assert isinstance(built, nn.CLIP)
    assert built.text_tower.token_embedding.weight.shape == (64, 32)
    assert built.image_tower.pos_embedding.weight.shape == (1 + 16, 32)
    with pytest.raises(
        ValueError, match=r"`clip_tiny` takes the arguments: .*Did you mean 'text_width'.*'text_widht'"
    ):
        nn.create("clip_tiny", num_classes=None, key=jax.random.key(0), text_widht=8)


def test_trains_with_the_contrastive_task_under_fit():
    """`loops.fit` feeds `inputs` as a dict: the pairs' loss falls, the temperature learns."""
    model = nn.CLIP(**{**SMALL, "vision_layers": 1, "text_layers": 1}, key=jax.random.key(4))
    rng = np.random.default_rng(0)
    batch = {
        "inputs": {
            "image": rng.normal(size=(8, 32, 32, 3)).astype(np.float32),
            "text": np.stack([np.asarray(text(i, i + 1)) for i in range(1, 9)]),
        }
    }
    task = tasks.ContrastiveTask(recall_at=())
    state, history = loops.fit(
        model,
        task,
        iter([batch] * 6),
        optimizer=optax.adam(3e-3),
        num_steps=6,
        key=jax.random.key(5),
        log_every=1,
        progress=False,
    )
    assert history[-1]["loss"] < history[0]["loss"]
    assert float(state.model.logit_scale) != pytest.approx(math.log(1 / 0.07))


def test_bad_inputs_are_refused(model, without_annotation_checks):
    image, tokens = jnp.zeros((32, 32, 3)), text(1, 2)
    with pytest.raises(
        ValueError,
        match=r"`inputs` of CLIP must be a dict with exactly the keys \['image', 'text'\].*Received: \['image'\]",
    ):
        model({"image": image})
    with pytest.raises(TypeError, match=r"`tokens` .* must hold integer token ids\. Received: dtype float32"):
        model.encode_text(tokens.astype(jnp.float32))
    with pytest.raises(
        ValueError, match=r"1 <= context <= `context_length` \(=10\)\. Received: shape \(11,\)"
    ):
        model.encode_text(jnp.zeros(11, jnp.int32))
    with pytest.raises(ValueError, match=r"batch it with `jax.vmap`\. Received: shape \(2, 10\)"):
        model.encode_text(jnp.stack([tokens, tokens]))
    with pytest.raises(
        ValueError, match=r"`x` \(the input of CLIPVisionTransformer\) must have size 3 on its `channels`"
    ):
        model.encode_image(jnp.zeros((32, 32, 1)))
    with pytest.raises(
        ValueError, match=r"must have size 32 on its `height` axis .* Received: shape \(16, 32, 3\)"
    ):
        model.encode_image(jnp.zeros((16, 32, 3)))


def test_an_id_outside_the_vocabulary_gives_nan(encode_text):
    assert np.isnan(encode_text(text(1, 50))).all()
    assert np.isnan(encode_text(text(1, -1))).all()
    assert np.isfinite(encode_text(text(1, 47))).all()


def test_bad_arguments_are_refused():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"`width` \(=24\) must be divisible by `num_heads` \(=5\)"):
        nn.CLIP(**{**SMALL, "vision_heads": 5}, key=key)
    with pytest.raises(ValueError, match=r"`width` \(=16\) must be divisible by `num_heads` \(=3\)"):
        nn.CLIP(**{**SMALL, "text_heads": 3}, key=key)
    with pytest.raises(ValueError, match=r"`image_size` \(=30\) must be divisible by `patch_size` \(=8\)"):
        nn.CLIP(**{**SMALL, "image_size": 30}, key=key)
    with pytest.raises(
        ValueError,
        match=r"`eos_token_id` must be None or an id in \[0, `vocab_size` \(=50\)\)\. Received: 50",
    ):
        nn.CLIP(**SMALL, eos_token_id=50, key=key)
