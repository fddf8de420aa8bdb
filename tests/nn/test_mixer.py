import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import nn
from scenic_eqx.nn import MixerBlock, MlpMixer

# LLVM optimisation off: these small programs compile about twice as fast, and the
# tests check values, not speed.
_jit = functools.partial(eqx.filter_jit, compiler_options={"xla_backend_optimization_level": 0})

TINY = {
    "num_classes": 3,
    "patch_size": 8,
    "hidden_size": 16,
    "num_layers": 2,
    "tokens_mlp_dim": 8,
    "channels_mlp_dim": 32,
    "image_size": 16,
}


def test_tiny_finite_gradients_and_one_trace(getkey):
    model = MlpMixer(**TINY, stochastic_depth=0.1, key=getkey())
    images = jax.random.normal(getkey(), (2, 16, 16, 3))
    keys = jax.random.split(getkey(), 2)

    @_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    @eqx.filter_value_and_grad
    def loss(model, images, keys):
        return jnp.sum(jnp.sin(jax.vmap(lambda x, k: model(x, key=k))(images, keys)))

    value, grads = loss(model, images, keys)
    loss(model, images + 1, keys)
    assert np.isfinite(value)
    for path, grad in jax.tree_util.tree_leaves_with_path(eqx.filter(grads, eqx.is_inexact_array)):
        assert np.any(grad != 0), f"no gradient for {jax.tree_util.keystr(path)}"
    features = _jit(lambda m, x: jax.vmap(m.features)(x))
    out = features(eqx.nn.inference_mode(model), images)
    assert {k: v.shape for k, v in out.items()} == {
        "stem": (2, 4, 16),
        "encoder_out": (2, 4, 16),
        "pre_logits": (2, 16),
        "logits": (2, 3),
    }


def test_block_mixes_tokens_then_channels(getkey):
    block = MixerBlock(4, 16, 8, 32, key=getkey())
    x = jax.random.normal(getkey(), (4, 16))

    @_jit
    def reference(block, x):
        y = x + block.token_mixing(block.norm1(x).T).T
        return y + block.channel_mixing(block.norm2(y))

    np.testing.assert_allclose(eqx.filter_jit(block)(x), reference(block, x), rtol=1e-5, atol=1e-5)
    assert block.token_mixing.dense1.weight.shape == (8, 4)


def test_registry_b16_parameter_count():
    # Mixer-B/16 at 224 with 1000 classes: 59,880,472 parameters (timm's mixer_b16_224).
    model = eqx.filter_eval_shape(nn.create, "mixer_b16", num_classes=1000, key=jax.random.key(0))
    leaves = [x for x in jax.tree.leaves(model) if isinstance(x, jax.ShapeDtypeStruct)]
    sizes = [x.size for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact)]
    assert sum(sizes) == 59_880_472
    for name in ["mixer_s16", "mixer_s32", "mixer_b32", "mixer_l16"]:
        assert name in nn.list_models()


def test_errors(getkey):
    with pytest.raises(ValueError, match=r"`image_size` \(=20\) must be divisible by `patch_size` \(=8\)"):
        MlpMixer(**{**TINY, "image_size": 20}, key=getkey())
    with pytest.raises(ValueError, match=r"`num_layers` \(=0\) must be at least 1"):
        MlpMixer(**{**TINY, "num_layers": 0}, key=getkey())
