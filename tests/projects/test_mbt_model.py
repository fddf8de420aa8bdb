"""projects/mbt: the MBT model's shapes, where cross-modal information can flow (nowhere
before `fusion_layer`, only through the bottleneck tokens after it), its views, its
refused inputs, and a few steps that lower the loss."""

import functools
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scenic_eqx import loops, nn, run, tasks

PROJECT = os.path.join(os.path.dirname(__file__), "..", "..", "projects", "mbt")
model_file = run.import_file(os.path.join(PROJECT, "model.py"))
fusion = run.import_file(os.path.join(PROJECT, "fusion.py"))
flops = run.import_file(os.path.join(PROJECT, "flops.py"))

# 4x4x4 = 64 RGB tubelets and 8x4 = 32 spectrogram patches (each plus a CLS token), width 16.
TINY = dict(
    hidden_size=16,
    num_layers=3,
    num_heads=2,
    mlp_dim=32,
    num_frames=8,
    image_size=16,
    tubelet_size=(2, 4, 4),
    spectrogram_frames=32,
    num_mel_bins=16,
    spectrogram_patch_size=4,
    fusion_layer=1,
    num_bottlenecks=2,
)


# Compiled once per model structure and input shape: eager layers would compile op by op.
features = eqx.filter_jit(lambda model, inputs: model.features(inputs))
logits = eqx.filter_jit(lambda model, inputs: model(inputs))


def _model(getkey, **overrides):
    # Initialised in one compiled program rather than op by op.
    return eqx.filter_jit(functools.partial(model_file.MBT, 4, **{**TINY, **overrides}))(key=getkey())


def _inputs(getkey, views=()):
    return {
        "rgb": jax.random.uniform(getkey(), (*views, 8, 16, 16, 3)),
        "spectrogram": jax.random.normal(getkey(), (*views, 32, 16)),
    }


def test_shapes_and_named_intermediates(getkey):
    model = _model(getkey)
    out = features(model, _inputs(getkey))
    assert out["logits"].shape == (4,)
    assert len(out["layers"]) == 3
    assert {m: t.shape for m, t in out["layers"][-1].items()} == {"rgb": (65, 16), "spectrogram": (33, 16)}
    assert out["bottleneck"].shape == (2, 16)
    # The logits are the mean of the shared head on each modality's CLS token.
    expected = (out["modality_logits"]["rgb"] + out["modality_logits"]["spectrogram"]) / 2
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-6)
    np.testing.assert_allclose(out["modality_logits"]["rgb"], model.head(out["cls"]["rgb"]), rtol=1e-6)


def test_registered_and_every_block_its_own(getkey):
    model = nn.create("mbt", num_classes=3, key=getkey(), **TINY)
    assert isinstance(model, model_file.MBT) and model.head.weight.shape == (3, 16)
    weights = [layer[m].mlp.dense1.weight for layer in model.layers for m in ("rgb", "spectrogram")]
    assert all(not np.allclose(a, b) for i, a in enumerate(weights) for b in weights[i + 1 :])


def _rgb_tokens_per_layer(model, inputs):
    return [np.asarray(layer["rgb"]) for layer in features(model, inputs)["layers"]]


# With full attention the RGB tokens read the sound at the fusion layer itself; through
# bottlenecks one layer later: at the fusion layer they attend to the learned initial
# bottleneck tokens, which the sound's block updates in that layer (eq. 9).
@pytest.mark.parametrize(("fusion_kind", "first_affected"), [("bottleneck", 3), ("full", 2)])
def test_modalities_are_independent_before_the_fusion_layer(getkey, fusion_kind, first_affected):
    model = _model(getkey, fusion=fusion_kind, num_layers=4, fusion_layer=2)
    inputs = _inputs(getkey)
    other_sound = {**inputs, "spectrogram": jax.random.normal(getkey(), (32, 16))}
    before, after = _rgb_tokens_per_layer(model, inputs), _rgb_tokens_per_layer(model, other_sound)
    for layer in range(first_affected):  # the RGB stream has not seen the sound yet
        np.testing.assert_array_equal(before[layer], after[layer])
    for layer in range(first_affected, 4):  # it has
        assert np.abs(before[layer] - after[layer]).max() > 1e-4


def _rgb_cls_gradient_norm(model, inputs, direction):
    """The norm of the gradient of `direction . rgb_cls` with respect to the spectrogram."""

    @eqx.filter_jit
    def gradient(model, spectrogram):
        def projection(spectrogram):
            return jnp.vdot(direction, model.features({**inputs, "spectrogram": spectrogram})["cls"]["rgb"])

        return jax.grad(projection)(spectrogram)

    return float(jnp.linalg.norm(gradient(model, inputs["spectrogram"])))


@pytest.mark.parametrize(
    ("overrides", "flows"),
    [
        (dict(fusion="bottleneck", fusion_layer=1), True),
        (dict(fusion="bottleneck", fusion_layer=0), True),
        (dict(fusion="full", fusion_layer=2), True),
        (dict(fusion="bottleneck", fusion_layer=3), False),  # fusion_layer = num_layers: none fuses
        (dict(fusion="bottleneck", fusion_layer=2), False),  # the last layer's bottleneck is read by none
        (dict(fusion="bottleneck", fusion_layer=0, num_bottlenecks=0), False),  # no path left
        (dict(fusion="late", fusion_layer=0), False),
    ],
)
def test_the_sound_reaches_the_rgb_cls_only_through_a_fusion(getkey, overrides, flows):
    model = _model(getkey, **overrides)
    norm = _rgb_cls_gradient_norm(model, _inputs(getkey), jax.random.normal(getkey(), (16,)))
    assert (norm > 1e-6) == flows, norm


def test_a_bottleneck_layer_is_eqs_8_and_9(getkey):
    blocks = _model(getkey).layers[1]
    rgb, bottleneck = jax.random.normal(getkey(), (65, 16)), jax.random.normal(getkey(), (2, 16))
    sounds = [jax.random.normal(getkey(), (33, 16)) for _ in range(2)]
    keys = {"rgb": None, "spectrogram": None}
    layer, block = eqx.filter_jit(fusion.bottleneck_layer), eqx.filter_jit(lambda block, x: block(x))
    outputs = [layer(blocks, {"rgb": rgb, "spectrogram": sound}, bottleneck, keys=keys) for sound in sounds]
    # Eq. 8: each modality's block on [its tokens; bottleneck] ...
    rgb_out = block(blocks["rgb"], jnp.concatenate([rgb, bottleneck]))
    sound_out = block(blocks["spectrogram"], jnp.concatenate([sounds[0], bottleneck]))
    np.testing.assert_allclose(outputs[0][0]["rgb"], rgb_out[:65], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs[0][0]["spectrogram"], sound_out[:33], rtol=1e-5, atol=1e-6)
    # ... eq. 9: the new bottleneck is the mean of the two modalities' updates of it.
    np.testing.assert_allclose(outputs[0][1], (rgb_out[65:] + sound_out[33:]) / 2, rtol=1e-5, atol=1e-6)
    # Other sound tokens, the same bottleneck: the RGB tokens come out the same, the
    # bottleneck (which carries the sound onwards) does not.
    np.testing.assert_array_equal(outputs[0][0]["rgb"], outputs[1][0]["rgb"])
    assert np.abs(outputs[0][1] - outputs[1][1]).max() > 1e-4


def test_one_modality_alone_reads_only_its_input(getkey):
    model = _model(getkey, modalities=("spectrogram",))
    inputs = _inputs(getkey)
    assert set(model.tokenizers) == {"spectrogram"} and model.bottleneck is None
    a = logits(model, inputs)
    b = logits(model, {"spectrogram": inputs["spectrogram"]})  # no RGB needed at all
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, features(model, inputs)["modality_logits"]["spectrogram"], rtol=1e-6)


def test_views_average_their_logits(getkey):
    model = _model(getkey)
    inputs = _inputs(getkey, views=(3,))
    per_view = [logits(model, {m: x[v] for m, x in inputs.items()}) for v in range(3)]
    np.testing.assert_allclose(logits(model, inputs), np.mean(per_view, axis=0), rtol=1e-5, atol=1e-6)


def test_refused_arguments_and_inputs(getkey):
    with pytest.raises(ValueError, match="`fusion` must be one of"):
        _model(getkey, fusion="early")
    with pytest.raises(ValueError, match=r"`fusion_layer` must be an int in \[0, `num_layers` \(=3\)\]"):
        _model(getkey, fusion_layer=4)
    with pytest.raises(ValueError, match="`modalities` must be distinct names"):
        _model(getkey, modalities=("rgb", "depth"))
    with pytest.raises(ValueError, match="`num_bottlenecks` must be a non-negative int"):
        _model(getkey, num_bottlenecks=-1)
    with pytest.raises(ValueError, match="must divide by `spectrogram_patch_size`"):
        _model(getkey, num_mel_bins=18)
    model, inputs = _model(getkey), _inputs(getkey)
    with pytest.raises(ValueError, match=r"`inputs` must be a dict with the entries .*Received: \['rgb'\]"):
        model({"rgb": inputs["rgb"]})
    with pytest.raises(
        ValueError, match=r'`inputs\["spectrogram"\]` must have shape \(32, 16\).*Received: shape'
    ):
        model({**inputs, "spectrogram": inputs["spectrogram"][:16]})
    with pytest.raises(ValueError, match="the same number of views"):
        model({**inputs, "rgb": inputs["rgb"][None]})


def test_a_few_steps_lower_the_loss(getkey):
    model = _model(getkey, num_layers=2, fusion_layer=1)
    batch = {
        "inputs": _inputs(getkey, views=(8,)),
        "label": jnp.arange(8, dtype=jnp.int32) % 4,
    }
    task, optimizer = tasks.ClassificationTask(), optax.adam(3e-3)
    state = loops.init_train_state(model, optimizer, key=getkey())
    step = eqx.filter_jit(loops.make_train_step(task, optimizer))
    losses = []
    for _ in range(30):
        state, loss, _ = step(state, batch)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


def test_audioset_recipe_is_mbt_b_16x2_with_bottlenecks():
    config = run.load_config(os.path.join(PROJECT, "configs", "audioset.py"))
    assert (config.dataset.num_frames, config.dataset.stride, config.dataset.spectrogram_frames) == (
        32,
        2,
        800,
    )
    arguments = {**config.model, "backbone_weights": None}
    shapes = eqx.filter_eval_shape(
        lambda key: nn.create(config.model_name, num_classes=527, **arguments, key=key), jax.random.key(0)
    )
    # 16 x 14 x 14 tubelets of 32 frames of 224x224; 50 x 8 patches of 800 x 128 log-mel frames.
    assert shapes.tokenizers["rgb"].position.weight.shape == (1 + 16 * 14 * 14, 768)
    assert shapes.tokenizers["spectrogram"].position.weight.shape == (1 + 50 * 8, 768)
    assert (len(shapes.layers), shapes.fusion_layer, shapes.bottleneck.shape) == (12, 8, (4, 768))
    schedule = run.build_optimizer(config)[1]
    assert float(schedule(config.schedule_kwargs.warmup_steps)) == pytest.approx(0.5)


def test_bottleneck_fusion_saves_the_cross_modal_attention_flops():
    """Full fusion pays, per fused layer, for every token attending across the modalities;
    bottlenecks pay only for a few shared tokens, and none make bottleneck fusion late fusion."""
    one, two = (flops.fusion_flops({**TINY, "fusion_layer": layer}, 4) for layer in (2, 1))
    assert one["late"] < one["bottleneck"] < one["full"]
    # Fusing full attention from one layer earlier doubles what it adds over late fusion.
    np.testing.assert_allclose(two["full"] - two["late"], 2 * (one["full"] - one["late"]), rtol=5e-3)
    none = flops.fusion_flops({**TINY, "num_bottlenecks": 0}, 4)
    np.testing.assert_allclose(none["bottleneck"], none["late"], rtol=1e-3)
