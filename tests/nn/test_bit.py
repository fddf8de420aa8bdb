"""BiT (ResNet v2 with GroupNorm and weight standardisation) and its layers.

Gradients, finiteness and one-trace-per-shape are checked for every registered model
in test_zoo.py.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.nn import BIT_VARIANTS, BiTResNet, GroupNorm, StdConv2d, create, list_models
from scenic_eqx.nn._bit import PreActBottleneck


def test_std_conv_standardises_each_output_kernel(getkey):
    conv = StdConv2d(3, 5, 3, key=getkey())
    conv = eqx.tree_at(lambda c: c.weight, conv, 4.0 * conv.weight + 1.0)
    w = eqx.filter_jit(StdConv2d.standardized_weight)(conv)
    np.testing.assert_allclose(jnp.mean(w, axis=(1, 2, 3)), 0.0, atol=1e-6)
    np.testing.assert_allclose(jnp.var(w, axis=(1, 2, 3)), 1.0, rtol=1e-5)


def test_std_conv_hand_computed_value():
    conv = StdConv2d(2, 1, 1, key=jax.random.key(0))
    # Kernel (1, 3) has mean 2 and variance 1: it is applied as (-1, 1).
    conv = eqx.tree_at(lambda c: c.weight, conv, jnp.array([1.0, 3.0]).reshape(1, 2, 1, 1))
    x = jnp.stack([jnp.full((2, 2), 5.0), jnp.full((2, 2), 7.5)])
    np.testing.assert_allclose(eqx.filter_jit(conv)(x), jnp.full((1, 2, 2), 2.5), rtol=1e-6)


def test_std_conv_ignores_the_scale_and_shift_of_each_kernel(getkey):
    conv = StdConv2d(3, 4, 3, stride=2, key=getkey())
    x = jax.random.normal(getkey(), (3, 8, 8))
    out = eqx.filter_jit(conv)(x)
    assert out.shape == (4, 4, 4)
    scale = jnp.arange(1.0, 5.0).reshape(4, 1, 1, 1)
    rescaled = eqx.tree_at(lambda c: c.weight, conv, scale * conv.weight - 2.0)
    np.testing.assert_allclose(eqx.filter_jit(rescaled)(x), out, rtol=1e-4, atol=1e-5)


def test_group_norm_matches_equinox(getkey):
    ours = GroupNorm(2, 6)
    ours = eqx.tree_at(lambda n: (n.weight, n.bias), ours,
                       (jax.random.normal(getkey(), (6,)), jax.random.normal(getkey(), (6,))))  # fmt: skip
    reference = eqx.tree_at(lambda n: (n.weight, n.bias), eqx.nn.GroupNorm(2, 6),
                            (ours.weight, ours.bias))  # fmt: skip
    x = 3.0 * jax.random.normal(getkey(), (6, 4, 5)) + 1.0
    cotangent = jax.random.normal(getkey(), (6, 4, 5))

    @jax.jit
    def value_and_grads(norm, x):
        return jax.value_and_grad(lambda n, x: jnp.sum(n(x) * cotangent), argnums=(0, 1))(norm, x)

    (v_ours, (g_ours, gx_ours)), (v_ref, (g_ref, gx_ref)) = (
        value_and_grads(ours, x),
        value_and_grads(reference, x),
    )
    np.testing.assert_allclose(v_ours, v_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gx_ours, gx_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g_ours.weight, g_ref.weight, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g_ours.bias, g_ref.bias, rtol=1e-4, atol=1e-5)


def test_group_norm_bad_groups_is_named():
    with pytest.raises(ValueError, match=r"`channels` \(=6\) must be divisible by `num_groups` \(=4\)"):
        GroupNorm(4, 6)


def test_pre_activation_block_with_a_zero_branch_is_the_identity(getkey):
    # v2: nothing follows the sum, so a zero residual branch passes the input through,
    # negative values included (a v1 block would apply ReLU to the sum).
    block = PreActBottleneck(32, 8, 1, 2, key=getkey())
    assert block.downsample is None
    block = eqx.tree_at(lambda b: b.conv3.weight, block, jnp.zeros_like(block.conv3.weight))
    x = jax.random.normal(getkey(), (32, 4, 4))
    np.testing.assert_array_equal(eqx.filter_jit(block)(x), x)


def test_feature_and_logit_shapes():
    model = eqx.filter_eval_shape(BiTResNet, 5, depth=26, width=8, num_groups=2,
                                  key=jax.random.key(0))  # fmt: skip
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    features = eqx.filter_eval_shape(lambda m, x: jax.vmap(m.features)(x), model, x)
    assert {name: f.shape[1:] for name, f in features.items()} == {
        "stem": (8, 8, 8), "stage_1": (8, 8, 32), "stage_2": (4, 4, 64),
        "stage_3": (2, 2, 128), "stage_4": (1, 1, 256), "pre_logits": (256,),
    }  # fmt: skip
    assert eqx.filter_eval_shape(lambda m, x: jax.vmap(m)(x), model, x).shape == (2, 5)


def test_stacked_blocks_have_distinct_weights():
    model = BiTResNet(3, depth=26, width=8, num_groups=2, key=jax.random.key(0))  # as test_zoo
    for stage in model.stages:
        first, second = stage.blocks[0].conv2.weight, stage.blocks[1].conv2.weight
        assert first.shape == second.shape
        assert not np.allclose(first, second)


@pytest.mark.parametrize(
    "name, blocks, width",
    [("bit_r50x1", (3, 4, 6, 3), 64), ("bit_r50x3", (3, 4, 6, 3), 192),
     ("bit_r101x1", (3, 4, 23, 3), 64), ("bit_r101x3", (3, 4, 23, 3), 192),
     ("bit_r152x2", (3, 8, 36, 3), 128)],
)  # fmt: skip
def test_registry_builds_the_papers_variants(name, blocks, width):
    assert name in list_models()
    model = eqx.filter_eval_shape(create, name, num_classes=7, key=jax.random.key(0))
    assert tuple(len(stage.blocks) for stage in model.stages) == blocks
    assert BIT_VARIANTS[int(name[5:].split("x")[0])] == blocks
    assert model.stem.conv.weight.shape == (width, 3, 7, 7)
    assert model.head.weight.shape == (7, 32 * width)
    assert model.stages[1].blocks[0].downsample.weight.shape == (8 * width, 4 * width, 1, 1)


def test_bad_depth_lists_the_valid_depths():
    with pytest.raises(ValueError, match=r"`depth` \(=34\) must be one of 26, 50, 101, 152"):
        BiTResNet(5, depth=34, key=jax.random.key(0))


def test_width_not_divisible_by_groups_is_named():
    with pytest.raises(
        ValueError, match=r"`width` \(=8\) must be a positive multiple of `num_groups` \(=32\)"
    ):
        BiTResNet(5, width=8, key=jax.random.key(0))


def test_parameter_count_matches_timms():
    # timm's `resnetv2_50x1_bit.goog_in21k` (21843 classes): 68.3M parameters.
    model = eqx.filter_eval_shape(create, "bit_r50x1", num_classes=21843, key=jax.random.key(0))
    params = [x for x in jax.tree.leaves(model) if isinstance(x, jax.ShapeDtypeStruct)]
    assert round(sum(x.size for x in params) / 1e6, 1) == 68.3
