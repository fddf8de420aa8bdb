"""projects/omninet: Performer attention against exact softmax attention, the omnidirectional
layer's receptive field over every layer and position, the OmniNet ViT's layout, wiring and
parameter count, and a few training steps that lower the loss."""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scenic_eqx import loops, nn, run, tasks

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROJECT = os.path.join(ROOT, "projects", "omninet")
performer = run.import_file(os.path.join(PROJECT, "performer.py"))
omnidirectional = run.import_file(os.path.join(PROJECT, "omnidirectional.py"))
model_file = run.import_file(os.path.join(PROJECT, "model.py"))

# 16 patch tokens (4x4 grid of 2x2 patches) of width 16, 2 heads.
TINY = dict(patch_size=2, hidden_size=16, num_heads=2, mlp_dim=32, image_size=8, in_channels=1)


def _softmax_attention(q, k, v):
    weights = jax.nn.softmax(jnp.einsum("hqd,hkd->hqk", q, k) / np.sqrt(q.shape[-1]), axis=-1)
    return jnp.einsum("hqk,hkd->hqd", weights, v)


def test_orthogonal_features_are_orthogonal_in_blocks_with_gaussian_lengths(getkey):
    features = np.asarray(performer.orthogonal_gaussian_features(getkey(), 2000, 8))
    assert features.shape == (2000, 8)
    directions = features / np.linalg.norm(features, axis=1, keepdims=True)
    for block in (directions[:8], directions[8:16], directions[1992:2000]):
        np.testing.assert_allclose(block @ block.T, np.eye(8), atol=1e-5)
    # Each row is distributed as N(0, I_8): E|w|^2 = 8 (std of the mean of 2000: 0.09).
    assert abs(np.mean(np.sum(features**2, axis=1)) - 8) < 0.4
    np.testing.assert_allclose(np.cov(features.T), np.eye(8), atol=0.1)


def test_favor_attention_approaches_softmax_attention_within_its_estimated_error(getkey):
    """With m = 65,536 features, the error stays within 3 estimated standard deviations.

    For positive random features, the relative variance of one weight's estimate
    `phi(x) . phi(y) / exp(x . y)` is `(exp(|x + y|^2) - 1) / m` with independent
    features (Performer, Lemma 2; `x`, `y` the query and key scaled by `d^(-1/4)`), and
    orthogonal features only lower it (its section 2.4). An output's error is a weighted
    mean of those relative errors times `v_j - out`: the tolerance is 3 times their
    root-mean-square standard deviation times the largest `|v_j - out|`. It is smaller
    than the distance from softmax attention to a plain mean of the values (uniform
    weights), so the check tells the two apart.
    """
    num_features, head_dim = 65_536, 8

    @jax.jit
    def compare(q, k, v, key):
        projection = performer.orthogonal_gaussian_features(key, num_features, head_dim)
        estimate = performer.favor_attention(q, k, v, projection)
        exact = _softmax_attention(q, k, v)
        x, y = q * head_dim**-0.25, k * head_dim**-0.25
        variance = jnp.mean(jnp.expm1(jnp.sum((x[:, :, None] + y[:, None]) ** 2, axis=-1))) / num_features
        spread = jnp.max(jnp.abs(v[:, None] - exact[:, :, None]))
        uniform = jnp.max(jnp.abs(exact - jnp.mean(v, axis=1, keepdims=True)))
        return jnp.max(jnp.abs(estimate - exact)), 3 * jnp.sqrt(variance) * spread, uniform

    q, k = (0.5 * jax.random.normal(getkey(), (2, n, head_dim)) for n in (5, 7))
    v = jax.random.normal(getkey(), (2, 7, 4))
    error, tolerance, distance_to_uniform = map(float, compare(q, k, v, getkey()))
    assert error < tolerance, (error, tolerance)
    assert tolerance < distance_to_uniform, (tolerance, distance_to_uniform)


def test_performer_attention_error_falls_with_the_number_of_features(getkey):
    """The Performer module against its own projections' exact attention (`exact`): more
    random features, a smaller error, about as `1 / sqrt(m)` (16x the features, ~4x less)."""
    x = 0.5 * jax.random.normal(getkey(), (6, 16))
    seeds = [getkey() for _ in range(4)]

    @eqx.filter_jit
    def error(attention, x):
        return jnp.max(jnp.abs(attention(x) - attention.exact(x)))

    def mean_error(num_features):
        return np.mean(
            [
                float(error(performer.PerformerAttention(16, 2, num_features=num_features, key=key), x))
                for key in seeds
            ]
        )

    coarse, fine = mean_error(64), mean_error(1024)
    assert fine < coarse / 2.5, (coarse, fine)
    assert fine < 0.1


def test_favor_outputs_are_convex_combinations_of_the_values(getkey):
    """Positive features give positive weights that sum to one, whatever their number."""
    q, k = (2.0 * jax.random.normal(getkey(), (2, 9, 8)) for _ in range(2))
    v = jax.random.normal(getkey(), (2, 9, 3))
    projection = jax.jit(performer.orthogonal_gaussian_features, static_argnums=(1, 2))(getkey(), 4, 8)
    out = jax.jit(performer.favor_attention)(q, k, v, projection)
    assert bool(jnp.all(jnp.isfinite(out)))
    assert bool(jnp.all(out <= jnp.max(v, axis=1, keepdims=True) + 1e-5))
    assert bool(jnp.all(out >= jnp.min(v, axis=1, keepdims=True) - 1e-5))


def test_performer_refuses_a_mask_and_bad_feature_counts(getkey):
    attention = performer.PerformerAttention(16, 2, num_features=8, key=getkey())
    with pytest.raises(ValueError, match=r"`mask` must be None.* Received: a mask of shape \(3, 3\)"):
        attention(jnp.ones((3, 16)), mask=jnp.ones((3, 3), bool))
    with pytest.raises(ValueError, match=r"`num_features` must be a positive int. Received: 0"):
        performer.PerformerAttention(16, 2, num_features=0, key=getkey())


def test_index_sort_puts_each_position_of_every_layer_side_by_side():
    layers = jnp.arange(3 * 4 * 1, dtype=jnp.float32).reshape(3, 4, 1)  # layer l, token n: 4 l + n
    sorted_tokens = omnidirectional.index_sort(layers)[:, 0]
    np.testing.assert_array_equal(sorted_tokens, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])


def test_omnidirectional_layer_every_output_sees_every_token_of_every_layer(getkey):
    layer = omnidirectional.OmnidirectionalLayer(16, 2, 32, num_features=16, key=getkey())
    layers = jax.random.normal(getkey(), (3, 5, 16))
    out = eqx.filter_jit(layer)(layers)
    assert out.shape == (5, 16)

    @eqx.filter_jit
    def sensitivity(layer, layers, position):
        """max over features of |d out[position] / d layers[l, m]|, for every layer l and position m."""
        jacobian = jax.jacrev(lambda stack: layer(stack)[position])(layers)  # [16, 3, 5, 16]
        return jnp.max(jnp.abs(jacobian), axis=(0, 3))

    # Every output position depends on every position of every layer: the receptive
    # field spans all positions and all layers.
    for position in range(5):
        assert bool(jnp.all(sensitivity(layer, layers, jnp.asarray(position)) > 1e-6)), position
    # Changing the first layer's tokens alone changes every output position.
    moved = eqx.filter_jit(layer)(layers.at[0].add(jax.random.normal(getkey(), (5, 16))))
    assert bool(jnp.all(jnp.max(jnp.abs(moved - out), axis=1) > 1e-4))


def test_omnidirectional_layer_is_max_over_layers_of_the_attended_tokens(getkey):
    layer = omnidirectional.OmnidirectionalLayer(16, 2, 32, attention="softmax", key=getkey())
    layers = jax.random.normal(getkey(), (3, 5, 16))
    attended = layer.attend(omnidirectional.index_sort(layers))
    expected = np.max(np.asarray(attended).reshape(5, 3, 16), axis=1)
    np.testing.assert_allclose(layer(layers), expected, rtol=1e-6)


def test_omnidirectional_layer_refuses_an_unknown_attention(getkey):
    with pytest.raises(ValueError, match=r"`attention` must be one of .* Received: 'linformer'"):
        omnidirectional.OmnidirectionalLayer(16, 2, 32, attention="linformer", key=getkey())


@pytest.mark.parametrize(
    "num_layers, partition_size, layout",
    [
        (4, None, ("vit", "vit", "vit", "omni")),
        (6, 3, ("vit", "vit", "omni", "vit", "vit", "omni")),
        (5, 2, ("vit", "omni", "vit", "omni", "vit")),
    ],
)
def test_vit_layout_shapes_and_parameters_of_the_vit_of_the_same_depth(
    getkey, num_layers, partition_size, layout
):
    model = model_file.OmniNetViT(
        10, **TINY, num_layers=num_layers, partition_size=partition_size, key=getkey()
    )
    assert model.layout == layout
    assert len(model.blocks) == layout.count("vit") and len(model.omni_layers) == layout.count("omni")
    features = eqx.filter_jit(lambda m, x: m.features(x))(model, jax.random.normal(getkey(), (8, 8, 1)))
    assert features["stem"].shape == (16, 16)
    assert features["omni"].shape == (layout.count("omni"), 16, 16)
    assert features["encoder_out"].shape == (16, 16) and features["logits"].shape == (10,)
    # An omnidirectional layer replaces a block with one of the same parameters (the
    # random features come from a key, not a parameter): the ViT's count exactly.
    vit = nn.ViT(10, **TINY, num_layers=num_layers, classifier="gap", key=getkey())
    params, _ = loops.partition_trainable(model)
    vit_params, _ = loops.partition_trainable(vit)
    assert sum(p.size for p in jax.tree.leaves(params)) == sum(p.size for p in jax.tree.leaves(vit_params))
    # Stacked layers get their own initialisation.
    assert not np.allclose(model.blocks[0].mlp.dense1.weight, model.blocks[1].mlp.dense1.weight)


def test_vit_adds_the_omni_representation_of_every_earlier_layer_to_the_last_block(getkey):
    """One partition of 3: encoder_out = norm(X_2 + O'(X_1, X_2)), the paper's X_L + MaxPool1D(O)."""
    model = model_file.OmniNetViT(10, **TINY, num_layers=3, classifier="token", key=getkey())
    image = jax.random.normal(getkey(), (8, 8, 1))

    @eqx.filter_jit
    def by_hand_and_by_model(model, image):
        tokens = jnp.concatenate([model.cls_token, model.embedding(image)])
        x1 = model.blocks[0](model.pos_embedding(tokens))
        x2 = model.blocks[1](x1)
        omni = model.omni_layers[0](jnp.stack([x1, x2]))
        return omni, model.norm(x2 + omni), model.features(image)

    omni, encoder_out, features = by_hand_and_by_model(model, image)
    np.testing.assert_allclose(features["omni"][0], omni, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features["encoder_out"], encoder_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(features["pre_logits"], features["encoder_out"][0], rtol=1e-6)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            dict(num_layers=4, partition_size=1),
            r"`partition_size` must be None or an int in \[2, num_layers=4\]",
        ),
        (dict(num_layers=4, partition_size=5), r"`partition_size` .* Received: 5"),
        (dict(num_layers=1), r"`num_layers` must be an int of at least 2 .* Received: 1"),
        (dict(num_layers=4, classifier="map"), r"`classifier` must be one of .* Received: 'map'"),
        (dict(num_layers=4, omni_attention="bigbird"), r"`attention` must be one of .* Received: 'bigbird'"),
    ],
)
def test_vit_rejects_bad_arguments(getkey, arguments, message):
    with pytest.raises(ValueError, match=message):
        model_file.OmniNetViT(10, **TINY, **arguments, key=getkey())


def test_vit_rejects_an_image_of_another_size(getkey):
    model = model_file.OmniNetViT(10, **TINY, num_layers=2, key=getkey())
    with pytest.raises(ValueError, match=r"`x` must be an image of `image_size` \(8, 8\).* Received: shape"):
        model.features(jnp.ones((16, 16, 1)))


def test_a_few_training_steps_lower_the_loss(getkey):
    model = nn.create("omninet_vit", num_classes=4, **TINY, num_layers=3, num_features=16, key=getkey())
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
    # The random features are not trained: the key that draws them is unchanged.
    np.testing.assert_array_equal(
        jax.random.key_data(state.model.omni_layers[0].attention.feature_key),
        jax.random.key_data(model.omni_layers[0].attention.feature_key),
    )


def test_imagenet_recipe_builds_omninet_b16_with_vit_b16_parameters():
    config = run.load_config(os.path.join(PROJECT, "configs", "imagenet.py"))
    vit_config = run.load_config(os.path.join(PROJECT, "configs", "imagenet.py:vit"))
    key = jax.random.key(0)
    omninet = eqx.filter_eval_shape(nn.create, config.model_name, num_classes=1000, key=key, **config.model)
    vit = eqx.filter_eval_shape(
        nn.create, vit_config.model_name, num_classes=1000, key=key, **vit_config.model
    )
    assert omninet.layout == ("vit",) * 11 + ("omni",)
    count = lambda m: sum(p.size for p in jax.tree.leaves(loops.partition_trainable(m)[0]))  # noqa: E731
    assert count(omninet) == count(vit)
    assert 86e6 < count(vit) < 87e6  # ViT-B/16 at 224x224 with a 1000-class head: 86.6M
