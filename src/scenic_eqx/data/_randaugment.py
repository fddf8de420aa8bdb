"""RandAugment: `num_layers` random image operations of one shared `magnitude`.

Reference: Cubuk et al., "RandAugment: Practical automated data augmentation with a
reduced search space", NeurIPS 2020. The 14 operations are the paper's (§3: identity,
auto-contrast, equalize, rotate, solarize, color, posterize, contrast, brightness,
sharpness, shear-x/y, translate-x/y), with PIL's definitions; magnitudes run from 0 to 10 (the strongest), as in the paper. At magnitude 0 every
operation but auto-contrast and equalize, which have no strength, leaves the image as it
is. Importing this module imports TensorFlow.
"""

import math
import numbers

import tensorflow as tf

MAX_MAGNITUDE = 10.0
# Grey, as AutoAugment fills the pixels that geometric operations uncover.
FILL_VALUE = 128.0
# Strongest settings, reached at magnitude 10.
MAX_ROTATE_DEGREES = 30.0
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.45  # of the image's width or height
MAX_ENHANCE = 0.9  # enhance factors range over 1 -/+ 0.9


def _blend(degenerate, image, factor):
    # PIL's ImageEnhance: factor 1 gives `image`, 0 `degenerate`, >1 extrapolates.
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _grey(image):
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def _transform(image, transform):
    # `transform` maps output (x, y) to input coordinates: [a0 a1 a2 b0 b1 b2 0 0].
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=tf.reshape(tf.cast(transform, tf.float32), [1, 8]),
        output_shape=tf.shape(image)[:2],
        fill_value=FILL_VALUE,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]


def identity(image, level, sign):
    del level, sign
    return image


def auto_contrast(image, level, sign):
    """Stretches each channel to [0, 255] (level-free, as in the paper)."""
    del level, sign
    low = tf.reduce_min(image, axis=[0, 1])
    high = tf.reduce_max(image, axis=[0, 1])
    scale = 255.0 / tf.maximum(high - low, 1.0)
    return tf.where(high > low, (image - low) * scale, image)


def _equalize_channel(channel):
    pixels = tf.cast(channel, tf.int32)
    histogram = tf.math.bincount(pixels, minlength=256, maxlength=256)
    last = tf.boolean_mask(histogram, histogram > 0)[-1]
    # PIL's ImageOps.equalize: `step` pixels per output level; the top value is left out.
    step = (tf.reduce_sum(histogram) - last) // 255
    lut = (tf.cumsum(histogram) + step // 2) // tf.maximum(step, 1)
    lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
    return tf.where(step > 0, tf.cast(tf.gather(lut, pixels), tf.float32), channel)


def equalize(image, level, sign):
    """Equalizes each channel's histogram (level-free)."""
    del level, sign
    return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


def rotate(image, level, sign):
    """Rotates about the centre by up to 30 degrees."""
    angle = sign * level * MAX_ROTATE_DEGREES * math.pi / 180.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    shape = tf.cast(tf.shape(image), tf.float32)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    transform = [cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy, 0, 0]
    return _transform(image, tf.stack(transform))


def solarize(image, level, sign):
    """Inverts the pixels at or above a threshold that falls from 256 to 0."""
    del sign
    threshold = 256.0 * (1.0 - level)
    return tf.where(image >= threshold, 255.0 - image, image)


def color(image, level, sign):
    """Saturation: blends with the grey image by a factor in 1 -/+ 0.9."""
    return _blend(_grey(image), image, 1.0 + sign * level * MAX_ENHANCE)


def posterize(image, level, sign):
    """Keeps the top 8 down to 4 bits of each value."""
    del sign
    shift = tf.cast(tf.round(level * 4.0), tf.uint8)
    pixels = tf.cast(image, tf.uint8)
    return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift), shift), tf.float32)


def contrast(image, level, sign):
    """Blends with the mean grey level by a factor in 1 -/+ 0.9."""
    mean = tf.reduce_mean(tf.image.rgb_to_grayscale(image))
    return _blend(tf.fill(tf.shape(image), mean), image, 1.0 + sign * level * MAX_ENHANCE)


def brightness(image, level, sign):
    """Blends with black by a factor in 1 -/+ 0.9."""
    return _blend(tf.zeros_like(image), image, 1.0 + sign * level * MAX_ENHANCE)


def sharpness(image, level, sign):
    """Blends with PIL's smoothed image (border pixels kept) by a factor in 1 -/+ 0.9."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.clip_by_value(tf.round(smooth), 0.0, 255.0)
    border = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]])
    degenerate = tf.where(border > 0, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), image)
    return _blend(degenerate, image, 1.0 + sign * level * MAX_ENHANCE)


def shear_x(image, level, sign):
    """Shears horizontally by up to 0.3 (x += shear * y)."""
    shear = sign * level * MAX_SHEAR
    return _transform(image, tf.stack([1.0, shear, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]))


def shear_y(image, level, sign):
    """Shears vertically by up to 0.3 (y += shear * x)."""
    shear = sign * level * MAX_SHEAR
    return _transform(image, tf.stack([1.0, 0.0, 0.0, shear, 1.0, 0.0, 0.0, 0.0]))


def translate_x(image, level, sign):
    """Shifts horizontally by up to 45% of the width."""
    shift = sign * level * MAX_TRANSLATE * tf.cast(tf.shape(image)[1], tf.float32)
    return _transform(image, tf.stack([1.0, 0.0, -shift, 0.0, 1.0, 0.0, 0.0, 0.0]))


def translate_y(image, level, sign):
    """Shifts vertically by up to 45% of the height."""
    shift = sign * level * MAX_TRANSLATE * tf.cast(tf.shape(image)[0], tf.float32)
    return _transform(image, tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, -shift, 0.0, 0.0]))


OPS = (
    identity,
    auto_contrast,
    equalize,
    rotate,
    solarize,
    color,
    posterize,
    contrast,
    brightness,
    sharpness,
    shear_x,
    shear_y,
    translate_x,
    translate_y,
)


def layer_choices(seed: tf.types.experimental.TensorLike, num_layers: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The operations and signs of `randaugment`: uniform indices into `OPS`, signs +-1."""
    op_seed, sign_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    indices = tf.random.stateless_uniform([num_layers], op_seed, minval=0, maxval=len(OPS), dtype=tf.int32)
    coins = tf.random.stateless_uniform([num_layers], sign_seed, minval=0, maxval=2, dtype=tf.int32)
    return indices, tf.cast(2 * coins - 1, tf.float32)


def randaugment(
    image: tf.types.experimental.TensorLike,
    *,
    seed: tf.types.experimental.TensorLike,
    num_layers: int = 2,
    magnitude: int | float = 9.0,
) -> tf.Tensor:
    """Applies `num_layers` operations drawn uniformly (with replacement) from `OPS`.

    Arguments:
        image: uint8 RGB `[height, width, 3]`.
        seed: int `[2]`; the same seed applies the same operations.
        num_layers: the number of operations applied in turn (the paper's N).
        magnitude: their common strength in [0, 10] (the paper's M); signed operations
            (rotate, shears, translations, enhancements) draw their direction at random.

    Returns:
        uint8 `[height, width, 3]`.
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, numbers.Integral) or num_layers < 0:
        raise ValueError(f"`num_layers` (={num_layers!r}) must be a non-negative integer.")
    if not isinstance(magnitude, numbers.Real) or not 0 <= magnitude <= MAX_MAGNITUDE:
        raise ValueError(f"`magnitude` (={magnitude!r}) must be a number in [0, {MAX_MAGNITUDE:g}].")
    if image.shape.rank != 3 or image.shape[-1] != 3:
        raise ValueError(f"`image` must be RGB `[height, width, 3]`; got shape {image.shape}.")
    level = tf.constant(magnitude / MAX_MAGNITUDE, tf.float32)
    indices, signs = layer_choices(seed, num_layers)
    result = tf.cast(image, tf.float32)
    for layer in range(num_layers):
        branches = [
            (lambda op=op, x=result, s=signs[layer]: tf.ensure_shape(op(x, level, s), image.shape))
            for op in OPS
        ]
        result = tf.switch_case(indices[layer], branches)
    return tf.cast(tf.clip_by_value(tf.round(result), 0.0, 255.0), tf.uint8)
