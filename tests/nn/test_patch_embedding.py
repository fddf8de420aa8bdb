import equinox as eqx
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from scenic_eqx.nn import PatchEmbedding


@pytest.mark.parametrize("patch_size", [4, (2, 4)])
def test_equals_strided_convolution(getkey, patch_size):
    layer = PatchEmbedding(3, 5, patch_size, key=getkey())
    x = jax.random.normal(getkey(), (8, 12, 3))
    ph, pw = layer.patch_size
    conv = jax.lax.conv_general_dilated(
        x[None], layer.weight, (ph, pw), "VALID", dimension_numbers=("NHWC", "OIHW", "NHWC")
    )[0]
    out = eqx.filter_jit(layer)(x)
    assert out.shape == ((8 // ph) * (12 // pw), 5)
    np.testing.assert_allclose(out, conv.reshape(-1, 5) + layer.bias[None], rtol=1e-5, atol=1e-5)


def test_errors(getkey):
    layer = PatchEmbedding(3, 5, 4, key=getkey())
    with pytest.raises(
        ValueError, match=r"The image size must be divisible by `patch_size` \(=4x4\). Received: 6x8."
    ):
        layer(jnp.ones((6, 8, 3)))
    with pytest.raises(
        ValueError, match=r"`patch_size` must be a positive int or a pair of them. Received: 0."
    ):
        PatchEmbedding(3, 5, 0, key=getkey())
    with pytest.raises(jaxtyping.TypeCheckError, match="height width channels"):
        layer(jnp.ones((2, 8, 8, 3)))


def test_without_bias(getkey):
    """OpenAI's CLIP embeds patches with a convolution that has no bias."""
    with_bias = PatchEmbedding(3, 5, 4, key=getkey())
    without = PatchEmbedding(3, 5, 4, use_bias=False, key=getkey())
    without = eqx.tree_at(lambda m: m.weight, without, with_bias.weight)
    with_bias = eqx.tree_at(lambda m: m.bias, with_bias, jnp.arange(5.0))
    x = jax.random.normal(getkey(), (8, 8, 3))
    assert without.bias is None
    np.testing.assert_allclose(
        with_bias(x) - without(x), jnp.tile(jnp.arange(5.0), (4, 1)), rtol=1e-5, atol=1e-5
    )
