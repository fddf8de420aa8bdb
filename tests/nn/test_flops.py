"""`nn.forward_flops` against XLA's cost analysis of the same (unrolled) forward pass.

XLA counts what the compiled program runs; the analytic count is the model's. They
differ where XLA's fusion duplicates a cheap elementwise producer into several fusions
(counted once per copy): a fraction of a percent on transformers, about 1% on small
ResNets. Models are sized so that products dominate, as in real models, and built
abstractly (`eqx.filter_eval_shape`): both counts need shapes only, so no weights are drawn.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from scenic_eqx import nn
from scenic_eqx.nn._conv2d import as_convolutions

# Compile time matters here, not speed: the backend's optimisations are off (the cost
# analysis runs on the HLO, before them, and is unchanged).
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _build(constructor, *args, **kwargs) -> eqx.Module:
    """The model with `jax.ShapeDtypeStruct`s in place of its arrays."""
    return eqx.filter_eval_shape(constructor, *args, **kwargs)


def _is_array(leaf) -> bool:
    return isinstance(leaf, jax.ShapeDtypeStruct) or eqx.is_array(leaf)


def _xla_flops(model: eqx.Module, input_shape: tuple[int, ...], batch: int = 2) -> float:
    """XLA's FLOPs per example of the vmapped forward pass.

    The parameters are arguments, not constants closed over: with constants, XLA folds
    away adds of zero biases and products with unit norm scales of a fresh model.
    """
    params, static = eqx.partition(model, _is_array)
    x = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
    if isinstance(model, nn.ResNet):  # BatchNorm: a state, and statistics over "batch".

        def forward(params, x, state):
            apply = jax.vmap(
                eqx.combine(params, static),
                in_axes=(0, None),
                out_axes=(0, None),
                axis_name="batch",
            )
            return apply(x, state)[0]

        args = (params, x, eqx.filter_eval_shape(eqx.nn.State, model))
    else:

        def forward(params, x):
            return jax.vmap(eqx.combine(params, static), axis_name="batch")(x)

        args = (params, x)
    # The convolutions as XLA's: on CPU `nn.Conv2d` computes some as products, whose
    # windows XLA fuses with their BatchNorm and ReLU, counting those once per window.
    with as_convolutions():
        compiled = jax.jit(forward).lower(*args).compile(_FAST_COMPILE)
    return compiled.cost_analysis()["flops"] / batch


def _relative_error(model: eqx.Module, input_shape: tuple[int, ...]) -> float:
    xla = _xla_flops(model, input_shape)
    return abs(nn.forward_flops(model, input_shape) - xla) / xla


def _vit(getkey, **overrides) -> nn.ViT:
    # 64 patches of 4x4 (+ a class token), hidden 64: the products are ~97% of the FLOPs.
    kwargs = dict(
        num_classes=10,
        patch_size=4,
        hidden_size=64,
        num_layers=4,
        num_heads=4,
        mlp_dim=256,
        image_size=32,
        key=getkey(),
    )
    return _build(nn.ViT, **{**kwargs, **overrides})


@pytest.mark.parametrize(
    "overrides",
    [
        dict(classifier="token"),
        dict(classifier="gap"),
        dict(classifier="map", num_layers=2),
        dict(posemb="sincos2d", representation_size=32, gelu_approximate=True, num_layers=2),
        # Attention 3 x 24 = 72 wide on 64-wide tokens, and no position embedding.
        dict(num_heads=3, head_dim=24, posemb="none", num_layers=2),
        dict(num_heads=6, head_dim=8, posemb="sincos1d", classifier="map", num_layers=2),
    ],
    ids=["token", "gap", "map", "sincos_prelogits_tanh_gelu", "head_dim_no_posemb", "head_dim_sincos1d_map"],
)
def test_vit_matches_xla(getkey, overrides):
    assert _relative_error(_vit(getkey, **overrides), (32, 32, 3)) < 0.02


def test_vit_count_ignores_scan_layers(getkey):
    key = getkey()
    unrolled = _vit(lambda: key)
    scanned = _vit(lambda: key, scan_layers=True)
    assert nn.forward_flops(scanned, (32, 32, 3)) == nn.forward_flops(unrolled, (32, 32, 3))


def test_xla_counts_a_scanned_encoder_once(getkey):
    """Why the count is analytic: XLA counts a `lax.scan` body once, not once per layer."""
    num_layers = 4
    model = _vit(getkey, num_layers=num_layers, scan_layers=True)
    analytic = nn.forward_flops(model, (32, 32, 3))
    one_layer = nn.forward_flops(_vit(getkey, num_layers=1), (32, 32, 3))
    two_layers = nn.forward_flops(_vit(getkey, num_layers=2), (32, 32, 3))
    per_layer = two_layers - one_layer
    xla = _xla_flops(model, (32, 32, 3))
    # XLA's count is the model's with num_layers - 1 blocks missing...
    assert abs(xla - (analytic - (num_layers - 1) * per_layer)) / xla < 0.02
    # ...so, with the encoder nearly all of the work, about num_layers times too small.
    assert 0.75 * num_layers < analytic / xla < num_layers


def test_vit_b16_matches_its_published_cost():
    # ~17.6 GMACs at 224x224 (timm's model table), 2 FLOPs each.
    model = _build(nn.create, "vit_b16", num_classes=1000, key=jax.random.key(0))
    assert abs(nn.forward_flops(model, (224, 224, 3)) / 2 - 17.58e9) / 17.58e9 < 0.005


@pytest.mark.parametrize(
    "depth, stem, image", [(18, "cifar", 32), (26, "cifar", 32), (18, "imagenet", 64),
                           (26, "imagenet", 64)],
    ids=["basic_cifar", "bottleneck_cifar", "basic_imagenet", "bottleneck_imagenet"],
)  # fmt: skip
def test_resnet_matches_xla(getkey, depth, stem, image):
    model = _build(nn.ResNet, 10, depth, width=16, stem=stem, key=getkey())
    assert _relative_error(model, (image, image, 3)) < 0.02


def test_resnet_count_follows_the_batch_norm_mode(getkey):
    model = _build(nn.ResNet, 10, 18, width=16, stem="cifar", key=getkey())
    inference = eqx.nn.inference_mode(model)
    assert nn.forward_flops(inference, (32, 32, 3)) < nn.forward_flops(model, (32, 32, 3))
    assert _relative_error(inference, (32, 32, 3)) < 0.02


def test_mixer_matches_xla(getkey):
    model = _build(nn.MlpMixer, 10, 4, 64, 2, 32, 256, image_size=32, key=getkey())
    assert _relative_error(model, (32, 32, 3)) < 0.02


def test_vivit_matches_xla(getkey):
    spacetime = _build(nn.ViViT, 10, (2, 8, 8), 64, 2, 4, 256, num_frames=4, image_size=32, key=getkey())
    assert _relative_error(spacetime, (4, 32, 32, 3)) < 0.02
    factorized = _build(
        nn.ViViT,
        10,
        (2, 8, 8),
        64,
        2,
        4,
        256,
        num_frames=8,
        image_size=32,
        attention_type="factorized_encoder",
        num_temporal_layers=2,
        key=getkey(),
    )
    assert _relative_error(factorized, (8, 32, 32, 3)) < 0.02
    # Several views of one video: each view's forward pass, and the mean of their logits.
    assert _relative_error(spacetime, (3, 4, 32, 32, 3)) < 0.02


def test_bit_matches_xla_per_example(getkey):
    # The kernels are standardised once per batch, not per example: the difference of two
    # batch sizes leaves XLA's per-example count.
    model = _build(nn.BiTResNet, 10, 26, width=16, num_groups=4, key=getkey())
    per_example = 2 * _xla_flops(model, (32, 32, 3), batch=4) - _xla_flops(model, (32, 32, 3))
    analytic = nn.forward_flops(model, (32, 32, 3))
    assert abs(analytic - per_example) / per_example < 0.02


def test_small_models_match_xla(getkey):
    cnn = _build(nn.SimpleCNN, 10, 3, (16, 32), key=getkey())
    assert _relative_error(cnn, (32, 32, 3)) < 0.02
    # Built concretely: its constructor takes a product of the input shape with jnp.
    model = nn.FullyConnected(10, (16, 16, 3), (64, 32), key=getkey())
    assert _relative_error(model, (16, 16, 3)) < 0.02


def test_hand_counted_values(getkey):
    # Dense 16 -> 8 (+bias), ReLU, dense 8 -> 3 (+bias).
    mlp = nn.FullyConnected(3, (4, 4, 1), (8,), key=getkey())
    assert nn.forward_flops(mlp, (4, 4, 1)) == (2 * 16 * 8 + 8) + 8 + (2 * 8 * 3 + 3)
    # A 3x3 "SAME" convolution on 4x4: along each axis 3 * 4 - 2 = 10 taps fall inside
    # the image (the 2 on the padding are not counted); then bias, ReLU, mean, head.
    cnn = _build(nn.SimpleCNN, 2, 1, (1,), key=getkey())
    assert nn.forward_flops(cnn, (4, 4, 1)) == 2 * 10 * 10 + 16 + 16 + 16 + (2 * 1 * 2 + 2)


def test_unsupported_model_is_a_type_error(getkey):
    with pytest.raises(
        TypeError,
        match=r"`model` \(a Linear\) has no FLOP-counting rule; "
        r"supported: ViT, ViViT, MlpMixer, ResNet",
    ):
        nn.forward_flops(eqx.nn.Linear(2, 2, key=getkey()), (2,))


def test_bad_input_shape_errors(getkey):
    vit = _vit(getkey, num_layers=1)
    with pytest.raises(
        ValueError,
        match=r"`input_shape` must be \(32, 32, 3\) for this ViT; "
        r"Received: \(64, 64, 3\)",
    ):
        nn.forward_flops(vit, (64, 64, 3))
    resnet = _build(nn.ResNet, 10, 18, width=4, stem="cifar", key=getkey())
    with pytest.raises(
        ValueError,
        match=r"must be \(height, width, 3\) for this ResNet; "
        r"Received: \(32, 32, 1\)",
    ):
        nn.forward_flops(resnet, (32, 32, 1))
    with pytest.raises(ValueError, match=r"positive ints; Received: \(32, 0, 3\)"):
        nn.forward_flops(resnet, (32, 0, 3))
    mlp = nn.FullyConnected(3, (4, 4, 1), (8,), key=getkey())
    with pytest.raises(
        ValueError,
        match=r"must have 16 elements for this FullyConnected; "
        r"Received: \(4, 4, 3\)",
    ):
        nn.forward_flops(mlp, (4, 4, 3))
    vivit = _build(nn.ViViT, 10, 4, 16, 1, 2, 32, num_frames=4, image_size=16, key=getkey())
    with pytest.raises(ValueError, match=r"one clip \(4, 16, 16, 3\) or its views"):
        nn.forward_flops(vivit, (2, 16, 16, 3))
