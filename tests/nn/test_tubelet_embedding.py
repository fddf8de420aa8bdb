import equinox as eqx
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from scenic_eqx.nn import PatchEmbedding, TubeletEmbedding


@pytest.mark.parametrize("tubelet_size", [2, (2, 4, 3)])
def test_equals_strided_3d_convolution(getkey, tubelet_size):
    layer = TubeletEmbedding(3, 5, tubelet_size, key=getkey())
    x = jax.random.normal(getkey(), (4, 8, 6, 3))
    pt, ph, pw = layer.tubelet_size
    conv = jax.lax.conv_general_dilated(
        x[None],
        layer.weight,
        (pt, ph, pw),
        "VALID",
        dimension_numbers=("NDHWC", "OIDHW", "NDHWC"),
    )[0]
    out = eqx.filter_jit(layer)(x)
    assert out.shape == ((4 // pt) * (8 // ph) * (6 // pw), 5)
    # Time-major, then row-major: the conv output flattened in (time, height, width) order.
    np.testing.assert_allclose(out, conv.reshape(-1, 5) + layer.bias[None], rtol=1e-5, atol=1e-5)


def test_one_frame_tubelets_are_patch_embeddings_of_each_frame(getkey):
    layer = TubeletEmbedding(3, 5, (1, 4, 4), key=getkey())
    patches = PatchEmbedding(3, 5, 4, key=getkey())
    patches = eqx.tree_at(lambda p: p.weight, patches, layer.weight[:, :, 0])
    x = jax.random.normal(getkey(), (3, 8, 8, 3))
    expected = jnp.concatenate([patches(frame) for frame in x])
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_initial_scale_is_lecun(getkey):
    layer = TubeletEmbedding(3, 256, (2, 4, 4), key=getkey())
    fan_in = 3 * 2 * 4 * 4
    assert float(jnp.std(layer.weight)) == pytest.approx(fan_in**-0.5, rel=0.05)
    np.testing.assert_array_equal(layer.bias, 0.0)


def test_errors(getkey):
    layer = TubeletEmbedding(3, 5, (2, 4, 4), key=getkey())
    with pytest.raises(
        ValueError, match=r"The video size must be divisible by `tubelet_size` \(=2x4x4\). Received: 3x8x8."
    ):
        layer(jnp.ones((3, 8, 8, 3)))
    with pytest.raises(
        ValueError, match=r"`tubelet_size` must be a positive int or a triple of them. Received: \(2, 4, 0\)."
    ):
        TubeletEmbedding(3, 5, (2, 4, 0), key=getkey())
    with pytest.raises(jaxtyping.TypeCheckError, match="time height width channels"):
        layer(jnp.ones((8, 8, 3)))
