"""The tf.data preprocessing ops: shapes, literal values and the statistics of random ops."""

import numpy as np
import pytest
import tensorflow as tf

from scenic_eqx.data import ops

N = 400  # draws per statistical test


def _seed(i):
    return tf.constant([i, 1234], tf.int64)


def _binomial_ok(count, n, p, sigmas=5.0):
    return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p))


def _draws(fn, n=N):
    """`fn(seed)` for `n` seeds, run as one tf.data pipeline (graph mode, fast)."""
    ds = tf.data.Dataset.range(n).map(
        tf.autograph.experimental.do_not_convert(lambda i: fn(tf.stack([i, 1234])))
    )
    return list(ds.as_numpy_iterator())


def _coded(height, width):
    """float32 `[height, width, 1]` whose pixel (y, x) holds `y * width + x`."""
    return tf.reshape(tf.range(height * width, dtype=tf.float32), [height, width, 1])


def test_decode_png_and_jpeg():
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    png = ops.decode(tf.io.encode_png(image))
    assert png.shape == (7, 9, 3) and png.dtype == tf.uint8
    np.testing.assert_array_equal(png, image)
    grey = ops.decode(tf.io.encode_jpeg(image), channels=1)
    assert grey.shape == (7, 9, 1)


def test_value_range_and_normalize():
    image = tf.constant([[[0, 51, 255]]], tf.uint8)
    np.testing.assert_allclose(ops.value_range(image), [[[0, 0.2, 1]]], rtol=1e-6)
    np.testing.assert_allclose(ops.value_range(image, -1, 1), [[[-1, -0.6, 1]]], rtol=1e-6)
    out = ops.normalize(ops.value_range(image), (0.0, 0.2, 0.5), (1.0, 2.0, 0.25))
    np.testing.assert_allclose(out, [[[0.0, 0.0, 2.0]]], atol=1e-6)


def test_resize_shapes_and_dtypes():
    image = tf.zeros([40, 60, 3], tf.uint8)
    assert ops.resize(image, 16).shape == (16, 16, 3)
    assert ops.resize(image, (10, 20)).dtype == tf.float32
    mask = tf.constant(np.arange(6, dtype=np.uint8).reshape(2, 3, 1))
    nearest = ops.resize(mask, (4, 6), method="nearest")
    assert nearest.dtype == tf.uint8
    np.testing.assert_array_equal(nearest[::2, ::2, 0], mask[..., 0])
    assert ops.resize_small(image, 32).shape == (32, 48, 3)
    assert ops.resize_small(tf.zeros([90, 30, 1]), 10).shape == (30, 10, 1)


@pytest.mark.parametrize("size", [0, (3,), (2, -1), True])
def test_bad_size(size):
    with pytest.raises(ValueError, match=r"`size` \(=.*\) must be a positive int or a \(height"):
        ops.resize(tf.zeros([4, 4, 1]), size)


def test_central_crop():
    out = ops.central_crop(_coded(6, 8), (2, 4))
    np.testing.assert_array_equal(out[..., 0], [[18, 19, 20, 21], [26, 27, 28, 29]])


def test_random_crop_offsets_are_uniform_over_the_range():
    image = _coded(12, 12)
    tops, lefts = [], []
    for crop in _draws(lambda seed: ops.random_crop(image, 4, seed=seed)):
        top, left = divmod(int(crop[0, 0, 0]), 12)
        np.testing.assert_array_equal(crop, image[top : top + 4, left : left + 4])
        tops.append(top)
        lefts.append(left)
    for offsets in (tops, lefts):
        counts = np.bincount(offsets, minlength=9)
        assert len(counts) == 9  # offsets in [0, 8]
        assert all(_binomial_ok(c, N, 1 / 9) for c in counts), counts
    # Same seed, same crop.
    np.testing.assert_array_equal(
        ops.random_crop(image, 4, seed=_seed(3)), ops.random_crop(image, 4, seed=_seed(3))
    )


def test_random_crop_larger_than_the_image():
    with pytest.raises(tf.errors.InvalidArgumentError, match="crop is larger than the image"):
        ops.random_crop(tf.zeros([3, 3, 1]), 4, seed=_seed(0))


def test_random_crop_with_pad_shifts_by_up_to_pad():
    image = _coded(8, 8) + 1  # no pixel is 0, the padding value
    padded = np.pad(image.numpy(), [(2, 2), (2, 2), (0, 0)])
    shifts = set()
    for out in _draws(lambda seed: ops.random_crop_with_pad(image, seed=seed, pad=2), 100):
        assert out.shape == (8, 8, 1) and out.dtype == np.float32
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(out, padded[dy : dy + 8, dx : dx + 8])
        ]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) == 25  # every shift in [-2, 2]^2 occurs in 100 draws


def test_random_crop_with_pad_arguments():
    with pytest.raises(ValueError, match=r"`pad` \(=-1\) must be a non-negative integer"):
        ops.random_crop_with_pad(tf.zeros([4, 4, 1]), seed=_seed(0), pad=-1)
    fn = tf.function(lambda x: ops.random_crop_with_pad(x, seed=_seed(0)))
    with pytest.raises(ValueError, match=r"`image` must have a static height and width"):
        fn.get_concrete_function(tf.TensorSpec([None, None, 1], tf.float32))


def test_random_flip_probability_is_one_half():
    image = _coded(3, 5)
    flipped = 0
    for out in _draws(lambda seed: ops.random_flip(image, seed=seed)):
        if np.array_equal(out, image[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_array_equal(out, image)
    assert _binomial_ok(flipped, N, 0.5), flipped


def test_inception_box_areas_and_aspect_ratios():
    shape = tf.constant([100, 120, 3])
    areas, ratios = [], []
    for (top, left, _), (height, width, channels) in _draws(lambda seed: ops.inception_box(shape, seed=seed)):
        assert channels == -1 and top >= 0 and left >= 0  # -1: every channel
        assert top + height <= 100 and left + width <= 120
        areas.append(height * width / 12_000)
        ratios.append(width / height)
    areas, ratios = np.array(areas), np.array(ratios)
    assert areas.min() >= 0.08 - 0.01 and areas.max() <= 1.0
    # The areas spread over the range; large windows of a drawn shape often do not fit
    # and are drawn again, so the mean is below the 0.54 of a uniform area.
    assert areas.min() < 0.15 and areas.max() > 0.9 and 0.3 < areas.mean() < 0.6
    whole = areas == 1.0  # the fallback when no window fits
    assert ratios[~whole].min() >= 0.75 - 0.05 and ratios[~whole].max() <= 4 / 3 + 0.05


def test_inception_crop_and_jpeg_fast_path_agree():
    rng = np.random.default_rng(0)
    # A smooth image, so that JPEG's loss is small.
    image = np.clip(np.cumsum(rng.integers(-3, 4, (48, 64, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    jpeg = tf.io.encode_jpeg(image, quality=100)
    decoded = tf.io.decode_jpeg(jpeg)
    for i in range(5):
        slow = ops.inception_crop(decoded, (16, 20), seed=_seed(i))
        fast = ops.decode_and_inception_crop(jpeg, (16, 20), seed=_seed(i))
        assert slow.shape == fast.shape == (16, 20, 3) and fast.dtype == tf.float32
        np.testing.assert_allclose(slow, fast, atol=2.0)


def test_resize_and_pad_keeps_the_aspect_ratio():
    image = tf.fill([50, 100, 3], tf.constant(200, tf.uint8))
    padded, scale = ops.resize_and_pad(image, 64)
    assert padded.shape == (64, 64, 3) and padded.dtype == tf.float32
    np.testing.assert_allclose(scale, [0.5, 1.0])
    np.testing.assert_allclose(padded[:32], 200.0, rtol=1e-5)
    np.testing.assert_array_equal(padded[32:], 0.0)


def test_onehot():
    np.testing.assert_array_equal(ops.onehot(tf.constant([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    smooth = ops.onehot(tf.constant(1), 2, on_value=0.9, off_value=0.1)
    np.testing.assert_allclose(smooth, [0.1, 0.9])


def test_ops_are_deterministic_in_a_parallel_pipeline():
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (20, 20, 3)), tf.uint8)

    @tf.autograph.experimental.do_not_convert
    def augment(index):
        crop_seed, flip_seed = tf.unstack(ops.split_seed(tf.stack([index, index])))
        out = ops.inception_crop(image, 8, seed=crop_seed)
        return ops.random_flip(out, seed=flip_seed)

    def run():
        ds = tf.data.Dataset.range(16).map(augment, num_parallel_calls=4)
        return np.stack(list(ds.as_numpy_iterator()))

    first, second = run(), run()
    np.testing.assert_array_equal(first, second)
    assert len({a.tobytes() for a in first}) == 16
