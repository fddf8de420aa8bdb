"""Preprocessing and augmentation ops for `tf.data` pipelines, one example at a time.

Each op maps the tensors of one example inside `tf.data.Dataset.map`. The random ones
are stateless: they take a `seed` (an integer `[2]` tensor) and give the same output
for the same seed, so a pipeline that derives its seeds from a fixed base seed gives
the same batches on every run. `split_seed` makes independent seeds for several ops.

Ops that take an image accept any number of channels unless they say otherwise, so
stacking an image and its segmentation mask along channels transforms both alike.
Importing this module imports TensorFlow.
"""

import numbers
from collections.abc import Sequence

import tensorflow as tf

Size = int | Sequence[int]
# Annotations: beartype checks them under test, and its `float` rejects an int.
Number = int | float
TensorLike = tf.types.experimental.TensorLike

# Per-channel statistics of the training images, in [0, 1] units.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def _positive(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def image_size(name: str, size: Size) -> tuple[int, int]:
    """`(height, width)` from an int (square) or a pair of positive ints.

    Arguments:
        name: the argument's name, for the error message.
        size: an int or a `(height, width)` pair.

    Returns:
        `(height, width)` as Python ints.
    """
    if _positive(size):
        return int(size), int(size)
    if isinstance(size, Sequence) and len(size) == 2 and all(map(_positive, size)):
        return int(size[0]), int(size[1])
    raise ValueError(f"`{name}` (={size!r}) must be a positive int or a (height, width) pair.")


def split_seed(seed: TensorLike, num: int = 2) -> tf.Tensor:
    """`num` independent seeds `[num, 2]` derived from `seed` `[2]`."""
    return tf.random.experimental.stateless_split(seed, num)


def decode(data: TensorLike, *, channels: int = 3) -> tf.Tensor:
    """Decodes an encoded image (JPEG, PNG, BMP or a GIF's first frame).

    Arguments:
        data: a scalar string tensor.
        channels: channels of the result (1 grey, 3 RGB).

    Returns:
        uint8 `[height, width, channels]`.
    """
    image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


def value_range(
    image: TensorLike,
    vmin: Number = 0.0,
    vmax: Number = 1.0,
    *,
    in_min: Number = 0.0,
    in_max: Number = 255.0,
) -> tf.Tensor:
    """Maps values linearly from `[in_min, in_max]` to `[vmin, vmax]`, as float32."""
    image = tf.cast(image, tf.float32)
    return vmin + (image - in_min) * ((vmax - vmin) / (in_max - in_min))


def normalize(image: TensorLike, mean: Sequence[Number], std: Sequence[Number]) -> tf.Tensor:
    """`(image - mean) / std` per channel, as float32.

    Arguments:
        image: `[height, width, channels]`, in the units of `mean` and `std` (e.g. [0, 1]
            after `value_range`, for `IMAGENET_MEAN`/`IMAGENET_STD`).
        mean: one value per channel.
        std: one positive value per channel.
    """
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    return (tf.cast(image, tf.float32) - mean) / std


def _resize(image, height, width, method: str, antialias: bool):
    if method == "nearest":
        # Keeps the dtype: label maps stay integer.
        return tf.image.resize(image, [height, width], method="nearest")
    return tf.image.resize(tf.cast(image, tf.float32), [height, width], method=method, antialias=antialias)


def resize(image: TensorLike, size: Size, *, method: str = "bilinear", antialias: bool = True) -> tf.Tensor:
    """Resizes to `size`, ignoring the aspect ratio.

    Arguments:
        image: `[height, width, channels]`.
        size: the output `(height, width)` (an int for a square).
        method: a `tf.image.resize` method; `"nearest"` keeps the dtype (for masks).
        antialias: low-pass filter when shrinking (ignored by `"nearest"`).

    Returns:
        `[size_h, size_w, channels]`, float32 unless `method="nearest"`.
    """
    height, width = image_size("size", size)
    return _resize(image, height, width, method, antialias)


def resize_small(
    image: TensorLike, smaller_size: int, *, method: str = "bilinear", antialias: bool = True
) -> tf.Tensor:
    """Resizes, keeping the aspect ratio, so that the shorter side is `smaller_size`."""
    smaller_size, _ = image_size("smaller_size", smaller_size)
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = smaller_size / tf.minimum(height, width)
    # The shorter side becomes exactly `smaller_size`, whatever the rounding.
    new_height = tf.maximum(tf.cast(tf.round(height * scale), tf.int32), smaller_size)
    new_width = tf.maximum(tf.cast(tf.round(width * scale), tf.int32), smaller_size)
    return _resize(image, new_height, new_width, method, antialias)


def _crop(image, top, left, height: int, width: int):
    crop = tf.slice(image, tf.stack([top, left, 0]), tf.stack([height, width, -1]))
    crop.set_shape([height, width, image.shape[-1]])
    return crop


def central_crop(image: TensorLike, size: Size) -> tf.Tensor:
    """The central `size` window (an image at least that large)."""
    height, width = image_size("size", size)
    shape = tf.shape(image)
    return _crop(image, (shape[0] - height) // 2, (shape[1] - width) // 2, height, width)


def crop_offsets(image_shape: TensorLike, size: Size, *, seed: TensorLike) -> tf.Tensor:
    """Uniform random `(top, left)` int32 `[2]` of a `size` window inside `image_shape`."""
    height, width = image_size("size", size)
    limit = image_shape[:2] - tf.constant([height, width]) + 1
    with tf.control_dependencies(
        [tf.debugging.assert_positive(limit, message="The crop is larger than the image.")]
    ):
        draw = tf.random.stateless_uniform([2], seed, dtype=tf.float32)
    offsets = tf.cast(tf.floor(draw * tf.cast(limit, tf.float32)), tf.int32)
    # float32 rounding may reach `limit` for a draw just below 1.
    return tf.minimum(offsets, limit - 1)


def random_crop(image: TensorLike, size: Size, *, seed: TensorLike) -> tf.Tensor:
    """A `size` window at a uniform random position.

    Arguments:
        image: `[height, width, channels]`, at least `size`.
        size: the window's `(height, width)`.
        seed: int `[2]`.

    Returns:
        `[size_h, size_w, channels]`, same dtype.
    """
    height, width = image_size("size", size)
    top, left = tf.unstack(crop_offsets(tf.shape(image), (height, width), seed=seed))
    return _crop(image, top, left, height, width)


def random_crop_with_pad(image: TensorLike, *, seed: TensorLike, pad: int = 4, fill: Number = 0) -> tf.Tensor:
    """Pads every side by `pad`, then crops back to the input size (CIFAR augmentation).

    Arguments:
        image: `[height, width, channels]` of static height and width.
        seed: int `[2]`.
        pad: pixels added on each side; each shift in `[-pad, pad]` is equally likely.
        fill: the padding value.

    Returns:
        The input's shape and dtype.

    Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2.
    """
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or pad < 0:
        raise ValueError(f"`pad` (={pad!r}) must be a non-negative integer.")
    height, width = image.shape[0], image.shape[1]
    if height is None or width is None:
        raise ValueError(f"`image` must have a static height and width; got {image.shape}.")
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], constant_values=fill)
    return random_crop(padded, (height, width), seed=seed)


def random_flip(image: TensorLike, *, seed: TensorLike) -> tf.Tensor:
    """Mirrors left-right with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed)


def inception_box(
    image_shape: TensorLike,
    *,
    seed: TensorLike,
    area_range: tuple[Number, Number] = (0.08, 1.0),
    aspect_ratio_range: tuple[Number, Number] = (3 / 4, 4 / 3),
) -> tuple[tf.Tensor, tf.Tensor]:
    """A random window of `area_range` of the image's area and `aspect_ratio_range` width/height.

    Arguments:
        image_shape: `[height, width, channels]`.
        seed: int `[2]`.
        area_range: the window's area as fractions of the image's.
        aspect_ratio_range: the window's width / height.

    Returns:
        `(begin, size)`, each int32 `[3]` (as `tf.slice` takes them); the whole image
        when no window fits after 10 attempts.
    """
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_shape,
        # No object to cover: any window of the right area and shape will do.
        bounding_boxes=tf.zeros([1, 0, 4], tf.float32),
        seed=seed,
        min_object_covered=0.0,
        area_range=area_range,
        aspect_ratio_range=aspect_ratio_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return begin, size


def inception_crop(
    image: TensorLike,
    size: Size,
    *,
    seed: TensorLike,
    area_range: tuple[Number, Number] = (0.08, 1.0),
    aspect_ratio_range: tuple[Number, Number] = (3 / 4, 4 / 3),
    method: str = "bilinear",
) -> tf.Tensor:
    """Crops a random `inception_box` and resizes it to `size` (float32).

    Reference: Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, §6.
    """
    height, width = image_size("size", size)
    begin, box = inception_box(
        tf.shape(image), seed=seed, area_range=area_range, aspect_ratio_range=aspect_ratio_range
    )
    return _resize(tf.slice(image, begin, box), height, width, method, True)


def decode_and_inception_crop(
    data: TensorLike,
    size: Size,
    *,
    seed: TensorLike,
    area_range: tuple[Number, Number] = (0.08, 1.0),
    aspect_ratio_range: tuple[Number, Number] = (3 / 4, 4 / 3),
) -> tf.Tensor:
    """`inception_crop` of a JPEG that decodes only the window: much faster on ImageNet.

    Arguments:
        data: a scalar string tensor holding a JPEG.
        size, seed, area_range, aspect_ratio_range: as in `inception_crop`.

    Returns:
        float32 `[size_h, size_w, 3]`.
    """
    height, width = image_size("size", size)
    begin, box = inception_box(
        tf.image.extract_jpeg_shape(data),
        seed=seed,
        area_range=area_range,
        aspect_ratio_range=aspect_ratio_range,
    )
    window = tf.stack([begin[0], begin[1], box[0], box[1]])
    image = tf.image.decode_and_crop_jpeg(data, window, channels=3)
    return _resize(image, height, width, "bilinear", True)


def resize_and_pad(image: TensorLike, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Resizes to fit in a `size` square keeping the aspect ratio, then zero-pads bottom/right.

    Arguments:
        image: `[height, width, channels]`.
        size: the side of the output square.

    Returns:
        `(padded, scale)`: float32 `[size, size, channels]` and float32 `[2]`, the
        resized image's `(height, width)` as fractions of `size`, to map coordinates
        normalised to the image onto the padded square.
    """
    size, _ = image_size("size", size)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new_shape = tf.cast(tf.round(shape * (size / tf.reduce_max(shape))), tf.int32)
    new_shape = tf.clip_by_value(new_shape, 1, size)
    resized = _resize(image, new_shape[0], new_shape[1], "bilinear", True)
    padded = tf.image.pad_to_bounding_box(resized, 0, 0, size, size)
    return padded, tf.cast(new_shape, tf.float32) / size


def onehot(
    label: TensorLike, num_classes: int, *, on_value: Number = 1.0, off_value: Number = 0.0
) -> tf.Tensor:
    """float32 one-hot `[..., num_classes]` of integer labels."""
    return tf.one_hot(label, num_classes, on_value=on_value, off_value=off_value, dtype=tf.float32)
