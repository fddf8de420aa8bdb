"""RandAugment: each operation's definition, and the random choice of operations."""

import numpy as np
import pytest
import tensorflow as tf

from scenic_eqx.data import _randaugment as ra, ops

IMAGE = np.random.default_rng(0).integers(0, 256, (12, 16, 3)).astype(np.float32)


def _apply(op, image, level, sign=1.0):
    return op(tf.constant(image, tf.float32), tf.constant(level), tf.constant(sign)).numpy()


@pytest.mark.parametrize("op", ra.OPS, ids=lambda op: op.__name__)
def test_every_op_keeps_shape_and_range(op):
    for level, sign in [(0.3, 1.0), (1.0, -1.0)]:
        out = _apply(op, IMAGE, level, sign)
        assert out.shape == IMAGE.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 255.0


@pytest.mark.parametrize(
    "op",
    [op for op in ra.OPS if op not in (ra.auto_contrast, ra.equalize)],
    ids=lambda op: op.__name__,
)
def test_magnitude_zero_is_the_identity(op):
    np.testing.assert_allclose(_apply(op, IMAGE, 0.0, -1.0), IMAGE, atol=1e-3)


def test_solarize_posterize_brightness_literals():
    pixels = np.array([[[0, 100, 127], [128, 200, 255]]], np.float32)
    np.testing.assert_array_equal(_apply(ra.solarize, pixels, 0.5), [[[0, 100, 127], [127, 55, 0]]])
    np.testing.assert_array_equal(_apply(ra.posterize, pixels, 1.0), [[[0, 96, 112], [128, 192, 240]]])
    # Level 1, sign -1: factor 0.1 towards black.
    np.testing.assert_allclose(_apply(ra.brightness, pixels, 1.0, -1.0), 0.1 * pixels, rtol=1e-6)
    np.testing.assert_allclose(
        _apply(ra.brightness, pixels, 1.0, 1.0), np.minimum(1.9 * pixels, 255), rtol=1e-6
    )


def test_auto_contrast_stretches_each_channel():
    image = np.stack([np.linspace(10, 20, 12).reshape(3, 4)] * 2 + [np.full((3, 4), 7.0)], -1)
    out = _apply(ra.auto_contrast, image.astype(np.float32), 0.0)
    np.testing.assert_allclose(out[..., 0].min(), 0) and np.testing.assert_allclose(
        out[..., 0].max(), 255, rtol=1e-6
    )
    np.testing.assert_array_equal(out[..., 2], 7.0)  # a flat channel stays as it is


def test_equalize_matches_pil():
    from PIL import Image, ImageOps

    rng = np.random.default_rng(1)
    # A skewed histogram (mostly dark), one channel nearly flat.
    image = (rng.beta(1.0, 4.0, (20, 24, 3)) * 255).astype(np.uint8)
    image[..., 2] = 100
    image[0, 0, 2] = 101
    expected = np.asarray(ImageOps.equalize(Image.fromarray(image)))
    out = _apply(ra.equalize, image.astype(np.float32), 0.0)
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out[..., 0], image[..., 0])


def test_translate_and_shear_move_pixels():
    image = np.zeros((10, 20, 3), np.float32)
    image[:, 5] = 255.0
    # 0.45 * level * 20 = 2 pixels to the right.
    out = _apply(ra.translate_x, image, 2 / 9)
    np.testing.assert_allclose(out[:, 7], 255.0, atol=1e-2)
    np.testing.assert_allclose(out[:, :2], ra.FILL_VALUE)  # uncovered pixels are grey
    # x_in = x + 0.3 * y: row 0 is left as it is; row 9 reads x + 2.7, so the line at
    # x = 5 lands between x = 2 (weight 0.7) and x = 3 (0.3).
    sheared = _apply(ra.shear_x, image, 1.0)
    np.testing.assert_allclose(sheared[0, :, 0], image[0, :, 0])
    np.testing.assert_allclose(sheared[9, 1:6, 0], [0, 0.7 * 255, 0.3 * 255, 0, 0], atol=0.1)


def test_rotate_turns_about_the_centre():
    image = np.random.default_rng(2).integers(0, 256, (11, 15, 3)).astype(np.float32)
    out = _apply(ra.rotate, image, 1.0, 1.0)
    np.testing.assert_allclose(out[5, 7], image[5, 7], atol=1e-3)  # the centre stays
    np.testing.assert_allclose(out[0, 0], ra.FILL_VALUE)  # a corner comes from outside
    # A point 4 pixels right of the centre comes from 4 pixels along a 30-degree turn.
    x_in = 7 + 4 * np.cos(np.pi / 6)
    y_in = 5 - 4 * np.sin(np.pi / 6)  # = 3: bilinear only along x
    expected = image[3, int(x_in)] * (1 - x_in % 1) + image[3, int(x_in) + 1] * (x_in % 1)
    np.testing.assert_allclose(out[5, 11], expected, atol=0.05)
    assert y_in == 3.0


def test_randaugment_shape_dtype_and_determinism():
    image = tf.constant(IMAGE.astype(np.uint8))
    seed = tf.constant([3, 4], tf.int64)
    out = ops.randaugment(image, seed=seed, num_layers=3, magnitude=9)
    assert out.shape == image.shape and out.dtype == tf.uint8
    np.testing.assert_array_equal(out, ops.randaugment(image, seed=seed, num_layers=3, magnitude=9))
    np.testing.assert_array_equal(ops.randaugment(image, seed=seed, num_layers=0), image)
    outs = {
        ops.randaugment(image, seed=tf.constant([i, 0]), magnitude=10).numpy().tobytes() for i in range(8)
    }
    assert len(outs) > 4


def test_operations_and_signs_are_uniform():
    num_layers, n = 2, 700
    draws = tf.data.Dataset.range(n).map(
        tf.autograph.experimental.do_not_convert(lambda i: ra.layer_choices(tf.stack([i, 7]), num_layers))
    )
    indices, signs = map(np.concatenate, zip(*draws.as_numpy_iterator()))
    total = n * num_layers
    counts = np.bincount(indices, minlength=len(ra.OPS))
    assert len(counts) == len(ra.OPS) == 14
    p = 1 / 14
    assert np.all(np.abs(counts - total * p) <= 5 * np.sqrt(total * p * (1 - p))), counts
    assert set(np.unique(signs)) == {-1.0, 1.0}
    assert abs((signs > 0).sum() - total / 2) <= 5 * np.sqrt(total / 4)


@pytest.mark.parametrize(
    "kwargs, image, match",
    [
        ({"num_layers": -1}, IMAGE, r"`num_layers` \(=-1\) must be a non-negative integer"),
        ({"magnitude": 11}, IMAGE, r"`magnitude` \(=11\) must be a number in \[0, 10\]"),
        (
            {},
            IMAGE[..., :1],
            r"`image` must be RGB `\[height, width, 3\]`; got shape \(12, 16, 1\)",
        ),
    ],
)
def test_bad_arguments(kwargs, image, match):
    with pytest.raises(ValueError, match=match):
        ops.randaugment(tf.constant(image.astype(np.uint8)), seed=tf.constant([0, 0]), **kwargs)
