"""DETR's scale augmentation: resizing and cropping an image with its boxes, on known boxes,
and the `coco/2017` options that use it (on TFDS's mock data)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from scenic_eqx import data
from scenic_eqx.data._detection_augment import (
    crop_with_boxes,
    detr_scale_augment,
    random_crop_with_boxes,
    resize_shorter_side,
)


def _coordinates(height: int, width: int) -> tf.Tensor:
    """An image whose pixel (y, x) holds (y, x, 0): a crop tells where it was cut."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return tf.constant(np.stack([rows, cols, np.zeros_like(rows)], -1), tf.int32)


def _seed(i: int) -> tf.Tensor:
    return tf.constant([i, 17], tf.int32)


@pytest.mark.parametrize(
    "shape, shorter_side, max_size, expected",
    [
        ((100, 200), 50, None, (50, 100)),  # the shorter side becomes 50
        ((200, 100), 50, None, (100, 50)),
        ((100, 200), 50, 80, (40, 80)),  # 50x100 would pass 80: the longer side is capped
        ((480, 640), 800, 1333, (800, 1067)),  # a COCO image at DETR's evaluation size
        ((300, 1000), 800, 1333, (400, 1333)),
    ],
)
def test_resize_shorter_side(shape, shorter_side, max_size, expected):
    image = tf.zeros((*shape, 3), tf.uint8)
    resized = resize_shorter_side(image, tf.constant(shorter_side), max_size=max_size)
    assert tuple(resized.shape) == (*expected, 3) and resized.dtype == tf.float32


def test_crop_maps_known_boxes_to_the_window():
    image = _coordinates(100, 200)
    # ymin, xmin, ymax, xmax of the 100x200 image: inside, across the window's right
    # edge, and wholly outside it.
    bbox = tf.constant([[0.2, 0.1, 0.4, 0.2], [0.3, 0.25, 0.5, 0.5], [0.8, 0.8, 0.9, 0.9]], tf.float32)
    window, boxes = crop_with_boxes(image, bbox, top=10, left=10, height=50, width=80)
    assert tuple(window.shape) == (50, 80, 3)
    assert window[0, 0, 0] == 10 and window[0, 0, 1] == 10 and window[-1, -1, 0] == 59
    # In pixels: (20, 20, 40, 40) -> (10, 10, 30, 30) of 50x80; (30, 50, 50, 100) ->
    # (20, 40, 40, 90), clipped to x <= 80; (80, 160, 90, 180) lies below the window.
    expected = [[10 / 50, 10 / 80, 30 / 50, 30 / 80], [20 / 50, 40 / 80, 40 / 50, 1.0], [1.0, 1.0, 1.0, 1.0]]
    np.testing.assert_allclose(boxes, expected, rtol=1e-6)


def test_random_crop_sizes_positions_and_boxes():
    image = _coordinates(60, 90)
    bbox = tf.constant([[0.25, 0.3, 0.75, 0.6]], tf.float32)
    heights, widths = set(), set()
    for i in range(40):
        window, boxes = random_crop_with_boxes(image, bbox, size_range=(20, 70), seed=_seed(i))
        height, width = window.shape[:2]
        assert 20 <= height <= 60 and 20 <= width <= 70  # capped at the image's 60 rows
        heights.add(height), widths.add(width)
        top, left = int(window[0, 0, 0]), int(window[0, 0, 1])
        np.testing.assert_array_equal(window, image[top : top + height, left : left + width])
        # The box (15, 27, 45, 54) in pixels, moved to the window and clipped.
        pixels = np.array([15.0, 27.0, 45.0, 54.0]) - [top, left, top, left]
        expected = np.clip(pixels / [height, width, height, width], 0.0, 1.0)
        np.testing.assert_allclose(boxes[0], expected, rtol=1e-5, atol=1e-6)
        again, _ = random_crop_with_boxes(image, bbox, size_range=(20, 70), seed=_seed(i))
        np.testing.assert_array_equal(again, window)  # stateless: the seed decides
    assert len(heights) > 10 and len(widths) > 10
    # An image smaller than the range is kept whole.
    small, boxes = random_crop_with_boxes(_coordinates(8, 9), bbox, size_range=(20, 30), seed=_seed(0))
    assert tuple(small.shape) == (8, 9, 3)
    np.testing.assert_allclose(boxes, bbox, rtol=1e-6)


def test_detr_scale_augment_sizes_and_the_crop_half_of_the_time():
    image = tf.zeros((120, 160, 3), tf.uint8)
    bbox = tf.constant([[0.4, 0.4, 0.6, 0.6]], tf.float32)
    sides, cropped = (48, 56, 64), 0
    for i in range(40):
        out, boxes = detr_scale_augment(
            image, bbox, seed=_seed(i), shorter_sides=sides, max_size=80, crop_size_range=(30, 50),
            crop_shorter_sides=(60,),
        )  # fmt: skip
        height, width = out.shape[:2]
        assert max(height, width) <= 80
        assert min(height, width) in sides or max(height, width) == 80
        cropped += not np.allclose(boxes, bbox)
    assert 8 <= cropped <= 32  # with probability 1/2
    # Without a crop the boxes never move.
    out, boxes = detr_scale_augment(image, bbox, seed=_seed(0), shorter_sides=(64,), max_size=1000)
    assert tuple(out.shape) == (64, 85, 3)
    np.testing.assert_array_equal(boxes, bbox)


def _image_extent(inputs: np.ndarray) -> tuple[int, int]:
    """Rows and columns of a zero-padded input that hold image (normalised pixels are never 0)."""
    inside = np.any(inputs != 0, axis=-1)
    return int(inside.any(axis=1).sum()), int(inside.any(axis=0).sum())


def test_coco_multiscale_and_crop_options():
    options = dict(image_size=64, max_boxes=6, shorter_sides=(32, 48), crop_size_range=(20, 30))
    with tfds.testing.mock_data(num_examples=8):
        ds = data.get_dataset("coco/2017", batch_size=4, eval_batch_size=4, shuffle_buffer_size=4,
                              crop_shorter_sides=(40,), **options)  # fmt: skip
        batches = [next(ds.train_iter) for _ in range(4)] + [("eval", b) for b in ds.test_iter]
    for batch in batches:
        training = not isinstance(batch, tuple)
        batch = batch if training else batch[1]
        assert batch["inputs"].shape == (4, 64, 64, 3)
        label = batch["label"]
        for inputs, boxes, mask in zip(batch["inputs"], label["boxes"], label["box_mask"]):
            height, width = _image_extent(inputs)
            sides = (32, 48) if training else (48,)
            assert min(height, width) in sides or max(height, width) == 64, (height, width)
            # Every kept box lies in the image, not in the padding.
            cx, cy, w, h = boxes[mask > 0].T
            assert np.all(w > 0) and np.all(h > 0)
            assert np.all(cx + w / 2 <= width / 64 + 1e-5) and np.all(cy + h / 2 <= height / 64 + 1e-5)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(shorter_sides=(480, 0)), r"`shorter_sides` must hold positive ints.*Received: \(480, 0\)"),
        (dict(shorter_sides=800), r"`shorter_sides` must be a non-empty sequence.*Received: 800"),
        (dict(crop_size_range=(600, 384)), r"`crop_size_range` must be a `\(low, high\)` pair.*\(600, 384\)"),
        (dict(crop_shorter_sides=()), r"`crop_shorter_sides` must be a non-empty sequence.*Received: \(\)"),
    ],
)
def test_bad_options_are_named(options, match):
    with tfds.testing.mock_data(num_examples=2), pytest.raises(ValueError, match=match):
        data.get_dataset("coco/2017", batch_size=2, eval_batch_size=2, **options)
