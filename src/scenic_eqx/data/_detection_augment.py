"""DETR's scale augmentation of an image and its boxes: multi-scale resizing and random crops.

Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020
(https://arxiv.org/abs/2005.12872), Section 4, with the sizes of the authors' code:
after a horizontal flip, each training image is resized so that its shorter side is
drawn from 480, 512, ..., 800 and its longer side is at most 1333; with probability 1/2
it is first resized to a shorter side of 400, 500 or 600 and a random window of 384 to
600 pixels a side is cut out of it (its boxes clipped to the window; those left empty
are then dropped). Evaluation resizes the shorter side to 800 (longer at most 1333).

Boxes are TFDS's `ymin, xmin, ymax, xmax`, normalised to the image: resizing leaves them
unchanged, cropping maps them to the window. Importing this module imports TensorFlow.
"""

from collections.abc import Sequence

import tensorflow as tf

from . import _preprocess as pp

TensorLike = tf.types.experimental.TensorLike

# The paper's sizes, in pixels.
DETR_SHORTER_SIDES = tuple(range(480, 801, 32))
DETR_MAX_SIZE = 1333
DETR_CROP_SHORTER_SIDES = (400, 500, 600)
DETR_CROP_SIZE_RANGE = (384, 600)


def check_sizes(name: str, sizes: object) -> tuple[int, ...]:
    """`sizes` as a non-empty tuple of positive ints; a clear error otherwise."""
    if isinstance(sizes, int) or not isinstance(sizes, Sequence) or not sizes:
        raise ValueError(
            f"`{name}` must be a non-empty sequence of positive ints (pixels). Received: {sizes!r}."
        )
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(f"`{name}` must hold positive ints (pixels). Received: {sizes!r}.")
    return tuple(sizes)


def check_size_range(name: str, size_range: object) -> tuple[int, int]:
    """`size_range` as `(low, high)` positive ints with `low <= high`; a clear error otherwise."""
    sizes = check_sizes(name, size_range)
    if len(sizes) != 2 or sizes[0] > sizes[1]:
        raise ValueError(f"`{name}` must be a `(low, high)` pair with low <= high. Received: {size_range!r}.")
    return sizes


def random_choice(values: Sequence[int], seed: TensorLike) -> tf.Tensor:
    """One of `values`, uniformly at random: an int32 scalar."""
    index = tf.random.stateless_uniform([], seed, minval=0, maxval=len(values), dtype=tf.int32)
    return tf.gather(tf.constant(values, tf.int32), index)


def resize_shorter_side(
    image: TensorLike, shorter_side: TensorLike, *, max_size: int | None = None
) -> tf.Tensor:
    """Resizes, keeping the aspect ratio, so that the shorter side is `shorter_side`, unless
    the longer one would then exceed `max_size`: then the longer side is `max_size`.

    Arguments:
        image: `[height, width, channels]`.
        shorter_side: the target of the shorter side (an int or an int32 scalar tensor).
        max_size: the cap on the longer side; `None` for none.

    Returns:
        float32 `[new_height, new_width, channels]`, bilinear with antialiasing.
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(shorter_side, tf.float32) / tf.reduce_min(shape)
    if max_size is not None:
        scale = tf.minimum(scale, max_size / tf.reduce_max(shape))
    new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
    if max_size is not None:
        new_shape = tf.minimum(new_shape, max_size)
    return tf.image.resize(tf.cast(image, tf.float32), new_shape, method="bilinear", antialias=True)


def crop_with_boxes(
    image: TensorLike,
    bbox: TensorLike,
    top: TensorLike,
    left: TensorLike,
    height: TensorLike,
    width: TensorLike,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The `height x width` window of `image` at `(top, left)`, and the boxes mapped to it.

    Arguments:
        image: `[H, W, channels]`.
        bbox: float32 `[n, 4]`, `ymin, xmin, ymax, xmax` normalised to the image.
        top, left, height, width: the window, in pixels, inside the image.

    Returns:
        `(window, boxes)`: `[height, width, channels]` and float32 `[n, 4]` normalised to
        the window and clipped to it; a box outside the window becomes empty
        (`ymax <= ymin` or `xmax <= xmin`), which `detection_label` drops.
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    window = tf.slice(image, tf.stack([top, left, 0]), tf.stack([height, width, -1]))
    offset = tf.cast(tf.stack([top, left, top, left]), tf.float32)
    pixels = tf.cast(tf.stack([height, width, height, width]), tf.float32)
    boxes = (tf.cast(bbox, tf.float32) * tf.tile(shape, [2]) - offset) / pixels
    return window, tf.clip_by_value(boxes, 0.0, 1.0)


def random_crop_with_boxes(
    image: TensorLike, bbox: TensorLike, *, size_range: tuple[int, int], seed: TensorLike
) -> tuple[tf.Tensor, tf.Tensor]:
    """A random window whose height and width are each drawn uniformly from
    `size_range` (inclusive, capped at the image's), at a uniform random position.

    Arguments:
        image: `[H, W, channels]`.
        bbox: float32 `[n, 4]`, `ymin, xmin, ymax, xmax` normalised to the image.
        size_range: `(low, high)` side of the window, in pixels.
        seed: int `[2]`.

    Returns:
        `(window, boxes)` as `crop_with_boxes`.
    """
    low, high = size_range
    size_seed, offset_seed = tf.unstack(pp.split_seed(seed, 2))
    shape = tf.shape(image)[:2]
    highs = tf.minimum(high, shape)
    lows = tf.minimum(low, highs)
    draw = tf.random.stateless_uniform([2], size_seed, dtype=tf.float32)
    # Uniform over the integers low..high; float32 rounding may reach high + 1.
    size = tf.minimum(lows + tf.cast(draw * tf.cast(highs - lows + 1, tf.float32), tf.int32), highs)
    offset_draw = tf.random.stateless_uniform([2], offset_seed, dtype=tf.float32)
    limit = shape - size + 1
    offsets = tf.minimum(tf.cast(offset_draw * tf.cast(limit, tf.float32), tf.int32), limit - 1)
    return crop_with_boxes(image, bbox, offsets[0], offsets[1], size[0], size[1])


def detr_scale_augment(
    image: TensorLike,
    bbox: TensorLike,
    *,
    seed: TensorLike,
    shorter_sides: Sequence[int] | None,
    max_size: int,
    crop_size_range: tuple[int, int] | None = None,
    crop_shorter_sides: Sequence[int] = DETR_CROP_SHORTER_SIDES,
) -> tuple[tf.Tensor, tf.Tensor]:
    """DETR's training-time scale augmentation of one image and its boxes.

    With `crop_size_range`, with probability 1/2: resize to a shorter side drawn from
    `crop_shorter_sides` and cut a random window (`random_crop_with_boxes`). Then, with
    `shorter_sides`, resize to a shorter side drawn from them with the longer side at
    most `max_size` (without, the caller fits the image to its square).

    Arguments:
        image: `[H, W, channels]`.
        bbox: float32 `[n, 4]`, `ymin, xmin, ymax, xmax` normalised to the image.
        seed: int `[2]`.
        shorter_sides: the multi-scale sizes (DETR: 480, 512, ..., 800), or `None`.
        max_size: the cap on the longer side after the multi-scale resize (DETR: 1333).
        crop_size_range: `(low, high)` side of the random crop (DETR: 384, 600), or
            `None` for no crop.
        crop_shorter_sides: the shorter sides drawn from before the crop (DETR: 400,
            500, 600).

    Returns:
        `(image, boxes)`: float32 `[h, w, channels]` and float32 `[n, 4]` normalised to it.
    """
    crop_seed, choose_seed, pre_seed, scale_seed = tf.unstack(pp.split_seed(seed, 4))
    image = tf.cast(image, tf.float32)
    bbox = tf.cast(bbox, tf.float32)
    if crop_size_range is not None:

        def cropped():
            resized = resize_shorter_side(image, random_choice(crop_shorter_sides, pre_seed))
            return random_crop_with_boxes(resized, bbox, size_range=crop_size_range, seed=crop_seed)

        crop = tf.random.stateless_uniform([], choose_seed) < 0.5
        image, bbox = tf.cond(crop, cropped, lambda: (image, bbox))
    if shorter_sides is not None:
        image = resize_shorter_side(image, random_choice(shorter_sides, scale_seed), max_size=max_size)
    return image, bbox
