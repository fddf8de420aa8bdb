"""projects/tokenlearner: TokenLearner and TokenFuser against their equations, the ViT
with a TokenLearner (shapes, fewer tokens and FLOPs after the insertion point) and a
few training steps that lower the loss."""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scenic_eqx import loops, nn, run, tasks

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROJECT = os.path.join(ROOT, "projects", "tokenlearner")
tokenlearner = run.import_file(os.path.join(PROJECT, "tokenlearner.py"))
model_file = run.import_file(os.path.join(PROJECT, "model.py"))

# 16 patch tokens (4x4 grid of 2x2 patches), width 16, 3 blocks; 4 learned tokens after block 1.
TINY = dict(
    patch_size=2,
    hidden_size=16,
    num_layers=3,
    num_heads=2,
    mlp_dim=32,
    image_size=8,
    in_channels=1,
    num_learned_tokens=4,
    tokenlearner_position=1,
    bottleneck_dim=8,
)


def _learner(getkey, **kwargs):
    return tokenlearner.TokenLearner(16, 4, bottleneck_dim=8, key=getkey(), **kwargs)


def test_token_learner_shapes_and_convex_weights(getkey):
    learner = _learner(getkey)
    x = jax.random.normal(getkey(), (10, 16))
    maps, learned = learner.attention_maps(x), learner(x)
    assert maps.shape == (4, 10) and learned.shape == (4, 16)
    # Softmax over the tokens: each map is a probability distribution over the 10 tokens...
    assert np.all(np.asarray(maps) >= 0)
    np.testing.assert_allclose(maps.sum(axis=1), np.ones(4), rtol=1e-6)
    # ...and each learned token is the weighted sum of the input tokens under it.
    np.testing.assert_allclose(learned, np.asarray(maps) @ np.asarray(x), rtol=1e-5, atol=1e-6)


def test_token_learner_of_a_constant_input_returns_that_token(getkey):
    token = jax.random.normal(getkey(), (16,))
    x = jnp.tile(token, (10, 1))
    # Softmax: identical tokens get the same score, so every map is uniform (1/N) and
    # every learned token is the input token itself.
    softmax = _learner(getkey)
    np.testing.assert_allclose(softmax.attention_maps(x), np.full((4, 10), 0.1), rtol=1e-6)
    np.testing.assert_allclose(softmax(x), np.tile(token, (4, 1)), rtol=1e-5, atol=1e-6)
    # Sigmoid: learned token s is N * sigmoid(score_s) times the input token, the score
    # being the MLP's output on the normalised token.
    sigmoid = _learner(getkey, normalization="sigmoid")
    scores = sigmoid.attention_mlp(token[None])[0]
    expected = 10 * jax.nn.sigmoid(scores)[:, None] * token[None]
    np.testing.assert_allclose(sigmoid(x), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected[0], expected[1])  # the scale differs per learned token


def test_token_learner_ignores_the_order_of_the_tokens(getkey):
    learner = _learner(getkey)
    x = jax.random.normal(getkey(), (10, 16))
    permuted = x[jax.random.permutation(getkey(), 10)]
    np.testing.assert_allclose(learner(permuted), learner(x), rtol=1e-5, atol=1e-6)


def test_token_fuser_starts_at_zero_and_gates_each_token_by_itself(getkey):
    fuser = tokenlearner.TokenFuser(16, 4, bottleneck_dim=8, key=getkey())
    learned, original = jax.random.normal(getkey(), (4, 16)), jax.random.normal(getkey(), (10, 16))
    # The token mixing starts at zero, as in the paper's code: x + fuser(y, x) is x.
    np.testing.assert_array_equal(fuser(learned, original), np.zeros((10, 16)))
    fuser = eqx.tree_at(lambda f: f.mix_weight, fuser, jax.random.normal(getkey(), (4, 4)))
    out = fuser(learned, original)
    assert out.shape == (10, 16)
    # out_n = sigmoid(MLP(LayerNorm(x_n))) @ LayerNorm(W_mix @ LayerNorm(y)).
    mixed = nn.normalize(fuser.mix_weight @ nn.normalize(learned, 1e-6), 1e-6)
    gates = jax.nn.sigmoid(fuser.gating_mlp(original))
    np.testing.assert_allclose(out, gates @ mixed, rtol=1e-5, atol=1e-5)
    # Row n depends on original token n only.
    changed = original.at[3].set(jax.random.normal(getkey(), (16,)))
    moved = np.abs(np.asarray(fuser(learned, changed) - out)).max(axis=1)
    assert moved[3] > 1e-3 and np.all(np.delete(moved, 3) == 0)


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("num_learned_tokens", 0, r"`num_learned_tokens` must be a positive int. Received: 0"),
        ("bottleneck_dim", -1, r"`bottleneck_dim` must be a positive int. Received: -1"),
        ("normalization", "relu", r"`normalization` must be one of .* Received: 'relu'"),
    ],
)
def test_token_learner_rejects_bad_arguments(getkey, argument, value, message):
    kwargs = {"num_learned_tokens": 4, "bottleneck_dim": 8, argument: value}
    with pytest.raises(ValueError, match=message):
        tokenlearner.TokenLearner(16, key=getkey(), **kwargs)


def test_vit_later_blocks_see_the_learned_tokens(getkey):
    model = model_file.TokenLearnerViT(10, **TINY, key=getkey())
    features = model.features(jax.random.normal(getkey(), (8, 8, 1)))
    assert features["stem"].shape == (16, 16)
    assert features["before_tokenlearner"].shape == (16, 16)
    assert features["learned_tokens"].shape == (4, 16)
    assert features["encoder_out"].shape == (4, 16)  # blocks 2 and 3 ran on 4 tokens
    assert features["logits"].shape == (10,)
    assert len(model.blocks_before) == 1 and len(model.blocks_after) == 2
    # Stacked blocks get their own initialisation.
    assert not np.allclose(model.blocks_after[0].mlp.dense1.weight, model.blocks_after[1].mlp.dense1.weight)
    fused = model_file.TokenLearnerViT(10, **TINY, use_token_fuser=True, key=getkey())
    features = fused.features(jax.random.normal(getkey(), (8, 8, 1)))
    assert features["learned_tokens"].shape == (4, 16)
    assert features["encoder_out"].shape == (16, 16)  # fused back to every patch token
    assert len(fused.token_learners) == len(fused.token_fusers) == 2


@pytest.mark.parametrize("position", [-1, 3, True])
def test_vit_rejects_a_position_without_a_later_block(getkey, position):
    with pytest.raises(ValueError, match=rf"`tokenlearner_position` .* Received: {position}"):
        model_file.TokenLearnerViT(10, **{**TINY, "tokenlearner_position": position}, key=getkey())


def test_each_block_after_the_tokenlearner_costs_a_block_on_the_learned_tokens():
    """Moving the TokenLearner one block later adds one block on 64 tokens and removes one
    on 8: the FLOPs differ by exactly that, counted by `nn.forward_flops` on plain ViTs."""
    size = dict(patch_size=1, hidden_size=32, num_heads=2, mlp_dim=64, in_channels=1)
    key = jax.random.key(0)

    def tokenlearner_vit(position):
        return eqx.filter_eval_shape(
            model_file.TokenLearnerViT,
            10,
            **size,
            num_layers=4,
            image_size=8,
            num_learned_tokens=8,
            tokenlearner_position=position,
            key=key,
        )

    def block_flops(image_size):  # one more block of a plain ViT on this many tokens
        count = [
            nn.forward_flops(
                eqx.filter_eval_shape(
                    nn.ViT, 10, **size, num_layers=n, image_size=image_size, classifier="gap", key=key
                ),
                (*image_size, 1),
            )
            for n in (1, 2)
        ]
        return count[1] - count[0]

    counts = [nn.counted_forward_flops(tokenlearner_vit(p), (8, 8, 1)) for p in (1, 2)]
    expected = block_flops((8, 8)) - block_flops((2, 4))  # 64 tokens, then 8
    assert counts[1] > counts[0]
    np.testing.assert_allclose(counts[1] - counts[0], expected, rtol=0.02)
    # And the count convention is the library's: a plain ViT agrees with `nn.forward_flops`.
    vit = eqx.filter_eval_shape(nn.ViT, 10, **size, num_layers=2, image_size=8, classifier="gap", key=key)
    np.testing.assert_allclose(
        nn.counted_forward_flops(vit, (8, 8, 1)), nn.forward_flops(vit, (8, 8, 1)), rtol=0.01
    )


def test_a_few_training_steps_lower_the_loss(getkey):
    model = nn.create("tokenlearner_vit", num_classes=4, **TINY, key=getkey())
    # Four classes told apart by which quadrant of the image is bright.
    labels = jnp.arange(32) % 4
    quadrants = jnp.zeros((4, 8, 8, 1))
    for c, (r, s) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        quadrants = quadrants.at[c, r : r + 4, s : s + 4].set(1.0)
    inputs = quadrants[labels] + 0.1 * jax.random.normal(getkey(), (32, 8, 8, 1))
    batch = {"inputs": inputs, "label": labels, "batch_mask": jnp.ones(32)}
    task, optimizer = tasks.ClassificationTask(), optax.adam(3e-3)
    state = loops.init_train_state(model, optimizer, key=getkey())
    step = eqx.filter_jit(loops.make_train_step(task, optimizer))
    losses = []
    for _ in range(30):
        state, loss, _ = step(state, batch)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(image_size=9), r"`image_size` must be divisible by `patch_size`. Received: image_size=9"),
        (dict(num_heads=3), r"`hidden_size` must be divisible by `num_heads`. Received: hidden_size=16"),
        (dict(num_layers=0), r"`num_layers` must be a positive int. Received: 0"),
        (dict(patch_size=(2, 0)), r"`patch_size` must be a positive int or a pair of them"),
    ],
)
def test_vit_rejects_bad_sizes(getkey, overrides, message):
    with pytest.raises(ValueError, match=message):
        model_file.TokenLearnerViT(10, **{**TINY, **overrides}, key=getkey())


def test_vit_rejects_an_image_of_another_size(getkey):
    model = model_file.TokenLearnerViT(10, **TINY, key=getkey())
    with pytest.raises(ValueError, match=r"`x` must be an image of `image_size` \(8, 8\). Received: shape"):
        model.features(jnp.zeros((16, 16, 1)))
