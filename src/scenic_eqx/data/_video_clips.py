"""Clip sampling and frame ops for videos, as TensorFlow ops inside tf.data maps.

A clip is `num_frames` frames `stride` apart. Training draws its start at random;
evaluation takes the middle clip, or `num_clips` clips spread uniformly over the video.
A video shorter than a clip loops (frame indices wrap around). Spatial ops act on a whole
clip `[time, height, width, channels]` at once, so a crop or a flip is the same for all
its frames. Random ops are stateless: given their `seed` (int64 `[2]`) they are
deterministic.
"""

import tensorflow as tf


def _max_offset(video_length: tf.Tensor, num_frames: int, stride: int) -> tf.Tensor:
    span = (num_frames - 1) * stride + 1
    return tf.maximum(tf.cast(video_length, tf.int32) - span, 0)


def clip_indices(video_length: tf.Tensor, offset: tf.Tensor, num_frames: int, stride: int) -> tf.Tensor:
    """Frame indices `[num_frames]` (int32) of the clip starting at `offset`, looping."""
    steps = offset + tf.range(num_frames, dtype=tf.int32) * stride
    return steps % tf.cast(video_length, tf.int32)


def random_offset(video_length: tf.Tensor, num_frames: int, stride: int, seed: tf.Tensor) -> tf.Tensor:
    """A start uniform over every clip that fits in the video (0 if none fits)."""
    maxval = _max_offset(video_length, num_frames, stride) + 1
    return tf.random.stateless_uniform([], seed, minval=0, maxval=maxval, dtype=tf.int32)


def eval_offsets(video_length: tf.Tensor, num_frames: int, stride: int, num_clips: int) -> tf.Tensor:
    """Starts `[num_clips]`: the middle clip for one, else evenly spaced from first to last."""
    max_offset = _max_offset(video_length, num_frames, stride)
    if num_clips == 1:
        return (max_offset // 2)[None]
    spaced = tf.linspace(0.0, tf.cast(max_offset, tf.float32), num_clips)
    return tf.cast(tf.round(spaced), tf.int32)


def decode_frames(encoded: tf.Tensor, channels: int) -> tf.Tensor:
    """JPEG bytes `[n]` to uint8 frames `[n, height, width, channels]` (all the same size)."""
    return tf.map_fn(
        lambda frame: tf.io.decode_jpeg(frame, channels=channels),
        encoded,
        fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8),
    )


def resize_smaller_side(frames: tf.Tensor, size: int) -> tf.Tensor:
    """Float frames `[n, height, width, channels]` resized so that the smaller side is `size`."""
    shape = tf.shape(frames)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    scale = size / tf.minimum(height, width)
    # max(size, .) keeps rounding from taking the smaller side below `size`.
    new_height = tf.maximum(size, tf.cast(tf.round(height * scale), tf.int32))
    new_width = tf.maximum(size, tf.cast(tf.round(width * scale), tf.int32))
    return tf.image.resize(frames, tf.stack([new_height, new_width]), antialias=True)


def crop(clip: tf.Tensor, top: tf.Tensor, left: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """The `size` window at `(top, left)` of every frame of `clip` `[time, h, w, c]`."""
    return tf.slice(clip, tf.stack([0, top, left, 0]), tf.stack([-1, size[0], size[1], -1]))


def random_crop_and_flip(clip: tf.Tensor, size: tuple[int, int], seed: tf.Tensor, *, flip: bool) -> tf.Tensor:
    """One random `size` crop of `clip` `[time, h, w, c]`, mirrored left-right with
    probability 1/2 if `flip`: the same window and the same flip for every frame."""
    top_seed, left_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    shape = tf.shape(clip)
    top = tf.random.stateless_uniform([], top_seed, minval=0, maxval=shape[1] - size[0] + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], left_seed, minval=0, maxval=shape[2] - size[1] + 1, dtype=tf.int32)
    clip = crop(clip, top, left, size)
    if flip:
        mirrored = tf.random.stateless_uniform([], flip_seed) < 0.5
        clip = tf.cond(mirrored, lambda: tf.reverse(clip, axis=[2]), lambda: clip)
    return clip


def eval_crops(clip: tf.Tensor, size: tuple[int, int], num_crops: int) -> tf.Tensor:
    """Crops `[num_crops, time, *size, c]` of `clip` `[time, h, w, c]`.

    One crop is the central one; three are the start, the centre and the end of the
    longer free side (left, centre, right for a landscape frame; top, centre, bottom for
    a portrait one), as in the 3-crop testing of Feichtenhofer et al. 2019 (SlowFast).
    """
    shape = tf.shape(clip)
    free_height, free_width = shape[1] - size[0], shape[2] - size[1]
    if num_crops == 1:
        return crop(clip, free_height // 2, free_width // 2, size)[None]
    along_width = free_width >= free_height
    crops = []
    for fraction in (0, 1, 2):  # start, centre, end
        top = tf.where(along_width, free_height // 2, free_height * fraction // 2)
        left = tf.where(along_width, free_width * fraction // 2, free_width // 2)
        crops.append(crop(clip, top, left, size))
    return tf.stack(crops)
