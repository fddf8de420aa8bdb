import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import nn

TINY = dict(
    num_queries=5, dim=16, num_heads=2, mlp_dim=32, num_encoder_layers=1, num_decoder_layers=3,
    backbone_depth=18, backbone_width=4, backbone_stem="cifar", dropout_rate=0.0,
)  # fmt: skip


@eqx.filter_jit
def _apply(model, state, x):
    return jax.vmap(lambda x: model(x, state)[0], axis_name="batch")(x)


@pytest.fixture(scope="module")
def detr():
    model = nn.DETR(4, **TINY, key=jax.random.key(0))
    return eqx.nn.inference_mode(model), eqx.nn.State(model)


def test_outputs_of_every_decoder_block(detr):
    model, state = detr
    x = jax.random.uniform(jax.random.key(1), (2, 24, 16, 3))
    out = _apply(model, state, x)
    assert {k: v.shape for k, v in out.items()} == {
        "pred_logits": (2, 5, 5),
        "pred_boxes": (2, 5, 4),
        "aux_pred_logits": (2, 2, 5, 5),
        "aux_pred_boxes": (2, 2, 5, 4),
    }
    assert np.all((out["pred_boxes"] > 0) & (out["pred_boxes"] < 1))
    # The auxiliary sets are the earlier blocks' outputs through the same heads: a
    # decoder cut to its first two blocks predicts them as its final set.
    cut = eqx.tree_at(lambda m: m.decoder.blocks, model, model.decoder.blocks[:2])
    cut_out = _apply(cut, state, x)
    np.testing.assert_allclose(cut_out["pred_logits"], out["aux_pred_logits"][:, 1], atol=1e-5)
    np.testing.assert_allclose(cut_out["pred_boxes"], out["aux_pred_boxes"][:, 1], atol=1e-6)
    np.testing.assert_allclose(cut_out["aux_pred_boxes"], out["aux_pred_boxes"][:, :1], atol=1e-6)


def test_predictions_follow_the_queries_not_their_order(detr):
    # No positional bias across queries: permuting the learned queries permutes the
    # predictions (the decoder's self-attention is permutation-equivariant).
    model, state = detr
    x = jax.random.uniform(jax.random.key(2), (1, 16, 16, 3))
    order = jnp.array([3, 0, 4, 1, 2])
    permuted = eqx.tree_at(lambda m: m.query_embedding, model, model.query_embedding[order])
    out, out_permuted = _apply(model, state, x), _apply(permuted, state, x)
    np.testing.assert_allclose(out_permuted["pred_boxes"], out["pred_boxes"][:, order], atol=1e-5)


def test_memory_uses_the_last_backbone_stage(detr):
    model, state = detr
    memory, pos, valid, _ = model.memory(jnp.zeros((24, 16, 3)), state)
    assert valid is None
    # cifar stem: 8x downsampling, so a 3x2 grid of tokens.
    assert memory.shape == pos.shape == (6, 16)
    np.testing.assert_allclose(pos, nn.posemb_sincos_2d(3, 2, 16))


def test_training_mode_gradients_reach_every_part():
    model = nn.DETR(2, **{**TINY, "dropout_rate": 0.1}, key=jax.random.key(3))
    state = eqx.nn.State(model)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    x = jax.random.uniform(jax.random.key(4), (2, 16, 16, 3))

    @eqx.filter_jit
    def grads(params):
        def loss(params):
            m = eqx.combine(params, static)
            keys = jax.random.split(jax.random.key(5), 2)
            out, _ = jax.vmap(
                lambda x, k: m(x, state, key=k), axis_name="batch", in_axes=(0, 0), out_axes=(0, None)
            )(x, keys)
            return sum(jnp.sum(jnp.sin(3 * leaf)) for leaf in jax.tree.leaves(out))

        return jax.grad(loss)(params)

    g = grads(params)
    for part in ("backbone", "input_projection", "encoder_blocks", "decoder", "query_embedding",
                 "class_head", "box_head"):  # fmt: skip
        leaves = jax.tree.leaves(getattr(g, part))
        assert any(np.any(leaf != 0) for leaf in leaves), part
        assert all(np.all(np.isfinite(leaf)) for leaf in leaves), part


def test_registry_variants_and_errors():
    model = eqx.filter_eval_shape(lambda: nn.create("detr_r50", num_classes=80, key=jax.random.key(0)))
    assert model.query_embedding.shape == (100, 256)
    assert model.class_head.weight.shape == (81, 256)
    assert len(model.backbone.stages[2].blocks) == 6 and model.backbone.head is None
    assert len(model.encoder_blocks) == 6 and len(model.decoder.blocks) == 6
    r101 = eqx.filter_eval_shape(lambda: nn.create("detr_r101", num_classes=80, key=jax.random.key(0)))
    assert len(r101.backbone.stages[2].blocks) == 23
    with pytest.raises(ValueError, match="`num_queries`"):
        nn.DETR(3, num_queries=0, key=jax.random.key(0))


def test_resnet_without_head_returns_pooled_features():
    key = jax.random.key(6)
    kwargs = dict(depth=18, width=4, stem="cifar")
    with_head = nn.ResNet(3, **kwargs, key=key)
    backbone = nn.ResNet(None, **kwargs, key=key)
    assert backbone.head is None
    x = jax.random.uniform(jax.random.key(7), (2, 16, 16, 3))
    run = lambda m: jax.vmap(lambda x: m(x, eqx.nn.State(m))[0], axis_name="batch")(x)  # noqa: E731
    pooled = run(eqx.nn.inference_mode(backbone))
    assert pooled.shape == (2, 32)
    logits = run(eqx.nn.inference_mode(with_head))
    np.testing.assert_allclose(logits, jax.vmap(with_head.head)(pooled), rtol=1e-5, atol=1e-6)


def test_encoder_block_position_enters_queries_and_keys_only():
    block = nn.EncoderBlock(8, 2, 16, key=jax.random.key(8))
    x = jax.random.normal(jax.random.key(9), (5, 8))
    np.testing.assert_allclose(block(x, pos=jnp.zeros((5, 8))), block(x), rtol=1e-6, atol=1e-6)
    pos = jax.random.normal(jax.random.key(10), (5, 8))
    # Reference: attention over norm1(x) + pos for queries and keys, norm1(x) for values.
    h = block.norm1(x)
    attention = block.attention
    q = jax.vmap(attention.query)(h + pos).reshape(5, 2, 4).transpose(1, 0, 2) / 2.0
    k = jax.vmap(attention.key)(h + pos).reshape(5, 2, 4).transpose(1, 0, 2)
    v = jax.vmap(attention.value)(h).reshape(5, 2, 4).transpose(1, 0, 2)
    weights = jax.nn.softmax(jnp.einsum("hqd,hkd->hqk", q, k), axis=-1)
    y = jax.vmap(attention.out)(jnp.einsum("hqk,hkd->hqd", weights, v).transpose(1, 0, 2).reshape(5, 8))
    expected = x + y
    expected = expected + block.mlp(block.norm2(expected))
    np.testing.assert_allclose(block(x, pos=pos), expected, rtol=1e-5, atol=1e-5)


def test_backbone_starts_from_a_resnet_classifier_checkpoint():
    path = "tests/nn/fixtures/timm_resnet_basic.safetensors"
    classifier = nn.create("resnet18", num_classes=5, width=2, weights=path, key=jax.random.key(0))
    detr = nn.DETR(3, **{**TINY, "backbone_width": 2, "backbone_stem": "imagenet"},
                   backbone_weights=path, key=jax.random.key(1))  # fmt: skip
    assert detr.backbone.head is None
    backbone_leaves = jax.tree.leaves(eqx.filter(detr.backbone, eqx.is_array))
    classifier_leaves = jax.tree.leaves(eqx.filter((classifier.stem, classifier.stages), eqx.is_array))
    assert len(backbone_leaves) == len(classifier_leaves)
    for ours, theirs in zip(backbone_leaves, classifier_leaves):
        np.testing.assert_array_equal(ours, theirs)


def test_zero_padding_is_masked_out_of_attention():
    # A 16x16 image padded with zeros to 48x40: 8x downsampling gives a 6x5 grid of
    # tokens, of which the top-left 2x2 cover the image. Masked, the model equals the
    # encoder and decoder run on those 4 tokens alone (the backbone's features of
    # padding near the image still reach them through its convolutions, as in DETR).
    model = nn.DETR(3, **TINY, mask_zero_padding=True, key=jax.random.key(11))
    model, state = eqx.nn.inference_mode(model), eqx.nn.State(model)
    image = jax.random.uniform(jax.random.key(12), (16, 16, 3), minval=0.1)
    padded = jnp.pad(image, ((0, 32), (0, 24), (0, 0)))
    memory, pos, valid, _ = model.memory(padded, state)
    expected = np.zeros((6, 5), bool)
    expected[:2, :2] = True
    np.testing.assert_array_equal(valid.reshape(6, 5), expected)

    grid = model.backbone.features(padded, state)[0]["stage_4"]
    tokens = jax.vmap(model.input_projection)(grid[:2, :2].reshape(4, -1))
    kept = np.flatnonzero(expected.reshape(-1))
    for block in model.encoder_blocks:
        tokens = block(tokens, pos=pos[kept])
    np.testing.assert_allclose(model.encoder_norm(tokens), memory[kept], rtol=1e-5, atol=1e-5)
    queries = model.query_embedding
    hidden = model.decoder(jnp.zeros_like(queries), memory[kept], query_pos=queries, memory_pos=pos[kept])
    outputs = _apply(model, state, padded[None])
    np.testing.assert_allclose(
        outputs["pred_logits"][0], jax.vmap(model.class_head)(hidden), rtol=1e-5, atol=1e-5
    )
    # Unmasked, the padding tokens take part and the predictions differ.
    unmasked = eqx.nn.inference_mode(nn.DETR(3, **TINY, key=jax.random.key(11)))
    difference = (
        _apply(unmasked, eqx.nn.State(unmasked), padded[None])["pred_logits"] - outputs["pred_logits"]
    )
    assert np.abs(difference).max() > 1e-3
