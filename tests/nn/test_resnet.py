"""ResNet v1.5: shapes, BatchNorm training/inference semantics, init, names and errors.

Gradients, finiteness and one-trace-per-shape are checked for every registered model
in test_zoo.py.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.nn import RESNET_VARIANTS, ResNet, create, list_models
from scenic_eqx.nn._resnet import BasicBlock, Bottleneck


def _batched(fn):
    return jax.vmap(fn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))


@eqx.filter_jit
def _apply(model, x, state):
    return _batched(model)(x, state)


def _abstract(**kwargs):
    """Model and state as shapes only: no initialisation is computed or compiled."""
    build = lambda key: eqx.nn.make_with_state(ResNet)(**kwargs, key=key)
    return eqx.filter_eval_shape(build, jax.random.key(0))


@pytest.fixture(scope="module")
def tiny():
    """A depth-18 ResNet with 4 base channels (as in test_zoo.py), shared below."""
    model = ResNet(3, depth=18, width=4, stem="cifar", zero_init_residual=False,
                   key=jax.random.key(0))  # fmt: skip
    return model, eqx.nn.State(model)


@pytest.fixture(scope="module")
def images():
    """Channels-first, as the stem receives them."""
    return jax.random.normal(jax.random.key(1), (4, 3, 8, 8))


@pytest.mark.parametrize(
    "depth, stem, size, expected",
    [
        (18, "cifar", 16, {"stem": (16, 16, 4), "stage_1": (16, 16, 4),
                           "stage_2": (8, 8, 8), "stage_3": (4, 4, 16),
                           "stage_4": (2, 2, 32), "pre_logits": (32,)}),
        (26, "imagenet", 64, {"stem": (16, 16, 4), "stage_1": (16, 16, 16),
                              "stage_2": (8, 8, 32), "stage_3": (4, 4, 64),
                              "stage_4": (2, 2, 128), "pre_logits": (128,)}),
    ],
)  # fmt: skip
def test_feature_and_logit_shapes(depth, stem, size, expected):
    model, state = _abstract(num_classes=5, depth=depth, width=4, stem=stem)
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    features_fn = lambda m, x, s: _batched(m.features)(x, s)
    features, _ = eqx.filter_eval_shape(features_fn, model, x, state)
    assert {name: f.shape[1:] for name, f in features.items()} == expected
    logits, _ = eqx.filter_eval_shape(lambda m, x, s: _batched(m)(x, s), model, x, state)
    assert logits.shape == (2, 5)


# BatchNorm semantics are checked on the stem (conv, BatchNorm, ReLU): the same layers as
# in every block, at a fraction of the compile time of the whole model.


def test_training_call_updates_running_statistics_over_the_batch_axis(tiny, images):
    model, state = tiny
    _, new_state = _apply(model.stem, images, state)
    norm = model.stem.norm
    # Statistics of the stem conv's output over batch and positions, per channel.
    conv_out = jax.vmap(model.stem.conv)(images)
    batch_mean = jnp.mean(conv_out, axis=(0, 2, 3))
    batch_var = jnp.var(conv_out, axis=(0, 2, 3))
    running_mean, running_var = new_state.get(norm.batch_state_index)
    # torch's update with its momentum 0.1, from the initial (0, 1).
    np.testing.assert_allclose(running_mean, 0.1 * batch_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(running_var, 0.9 + 0.1 * batch_var, rtol=1e-4)
    assert new_state.get(norm.batch_counter) == 1


def test_training_mode_normalises_each_example_with_the_batch(tiny, images):
    model, state = tiny
    out, _ = _apply(model.stem, images, state)
    out_other_batch, _ = _apply(model.stem, images.at[1:].multiply(3.0), state)
    assert not np.allclose(out[0], out_other_batch[0], atol=1e-4)


def test_inference_mode_uses_running_statistics_and_keeps_them(tiny, images):
    model, state = tiny
    _, trained_state = _apply(model.stem, images, state)
    stem = eqx.nn.inference_mode(model).stem
    # Initial running statistics (mean 0, variance 1): BatchNorm only divides by sqrt(1 + eps).
    out_fresh, _ = _apply(stem, images, state)
    expected = jax.nn.relu(jax.vmap(model.stem.conv)(images) / np.sqrt(1 + 1e-5))
    np.testing.assert_allclose(out_fresh, expected, rtol=1e-5, atol=1e-6)
    out, after = _apply(stem, images, trained_state)
    assert not np.allclose(out_fresh, out, atol=1e-4)
    np.testing.assert_array_equal(
        after.get(stem.norm.batch_state_index)[0], trained_state.get(stem.norm.batch_state_index)[0]
    )
    # Each example is normalised on its own: the rest of the batch does not matter.
    out_other_batch, _ = _apply(stem, images.at[1:].multiply(3.0), trained_state)
    np.testing.assert_allclose(out_other_batch[0], out[0], rtol=1e-5, atol=1e-6)


def test_inference_mode_reaches_every_batch_norm(tiny):
    model, state = tiny
    is_norm = lambda x: isinstance(x, eqx.nn.BatchNorm)
    norms = [x for x in jax.tree.leaves(model, is_leaf=is_norm) if is_norm(x)]
    assert len(norms) == 1 + 8 * 2 + 3  # stem, two per basic block, three projections
    assert not any(norm.inference for norm in norms)
    inference = eqx.nn.inference_mode(model)
    assert all(x.inference for x in jax.tree.leaves(inference, is_leaf=is_norm) if is_norm(x))
    x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
    logits, _ = eqx.filter_eval_shape(lambda m, x, s: _batched(m)(x, s), inference, x, state)
    assert logits.shape == (2, 3)


@pytest.mark.parametrize("zero_init_residual", [True, False])
def test_zero_init_residual_sets_the_last_norm_scale_of_each_block(zero_init_residual):
    model = ResNet(5, depth=18, width=4, stem="cifar", zero_init_residual=zero_init_residual,
                   key=jax.random.key(0))  # fmt: skip
    for stage in model.stages:
        for block in stage.blocks:
            np.testing.assert_array_equal(block.norm2.weight, 0.0 if zero_init_residual else 1.0)
            np.testing.assert_array_equal(block.norm1.weight, 1.0)


def test_stacked_blocks_have_distinct_weights(tiny):
    model, _ = tiny
    for stage in model.stages:
        first, second = stage.blocks[0].conv2.weight, stage.blocks[1].conv2.weight
        assert first.shape == second.shape
        assert not np.allclose(first, second)


def test_parameter_paths_follow_the_documented_tree():
    model, _ = _abstract(num_classes=5, depth=26, width=4)
    leaves = jax.tree_util.tree_flatten_with_path(model)[0]
    paths = {jax.tree_util.keystr(p) for p, leaf in leaves if isinstance(leaf, jax.ShapeDtypeStruct)}
    for expected in [
        ".stem.conv.weight", ".stem.norm.weight", ".stem.norm.bias",
        ".stages[0].blocks[0].conv1.weight", ".stages[0].blocks[0].norm3.bias",
        ".stages[0].blocks[0].downsample.conv.weight",
        ".stages[3].blocks[1].conv3.weight", ".stages[3].blocks[0].downsample.norm.weight",
        ".head.weight", ".head.bias",
    ]:  # fmt: skip
        assert expected in paths
    assert ".stages[0].blocks[1].downsample.conv.weight" not in paths
    # torch layout (out, in, kh, kw); 3x3 with stride in the bottleneck's middle conv.
    assert model.stages[1].blocks[0].conv2.weight.shape == (8, 8, 3, 3)
    assert model.stages[1].blocks[0].conv2.stride == (2, 2)
    assert model.stages[1].blocks[0].conv1.stride == (1, 1)


@pytest.mark.parametrize(
    "name, block_type, blocks",
    [("resnet18", BasicBlock, (2, 2, 2, 2)), ("resnet34", BasicBlock, (3, 4, 6, 3)),
     ("resnet50", Bottleneck, (3, 4, 6, 3)), ("resnet101", Bottleneck, (3, 4, 23, 3)),
     ("resnet152", Bottleneck, (3, 8, 36, 3))],
)  # fmt: skip
def test_registry_builds_the_papers_depths(name, block_type, blocks):
    assert name in list_models()
    model = eqx.filter_eval_shape(create, name, num_classes=7, key=jax.random.key(0))
    assert tuple(len(stage.blocks) for stage in model.stages) == blocks
    assert isinstance(model.stages[0].blocks[0], block_type)
    assert model.head.weight.shape == (7, 512 * block_type.expansion)
    assert RESNET_VARIANTS[int(name.removeprefix("resnet"))] == (block_type, blocks)


def test_bad_depth_lists_the_valid_depths():
    with pytest.raises(ValueError, match=r"`depth` \(=20\) must be one of 18, 26, 34, 50, 101, 152"):
        ResNet(5, depth=20, key=jax.random.key(0))


def test_bad_stem_is_named():
    with pytest.raises(ValueError, match=r"`stem` \(='tiny'\) must be 'imagenet' or 'cifar'"):
        ResNet(5, stem="tiny", key=jax.random.key(0))


def test_bad_width_is_named():
    with pytest.raises(ValueError, match=r"`width` \(=0\) must be a positive"):
        ResNet(5, width=0, key=jax.random.key(0))


def _num_parameters(model) -> int:
    is_index = lambda x: isinstance(x, eqx.nn.StateIndex)
    params = [x for x in jax.tree.leaves(model, is_leaf=is_index) if not is_index(x)]
    return sum(x.size for x in params if isinstance(x, jax.ShapeDtypeStruct))


@pytest.mark.parametrize(
    "name, count", [("resnet18", 11_689_512), ("resnet50", 25_557_032), ("resnet152", 60_192_808)]
)
def test_parameter_count_equals_torchvisions(name, count):
    model = eqx.filter_eval_shape(create, name, num_classes=1000, key=jax.random.key(0))
    assert _num_parameters(model) == count
