"""`coco/2017` for detection: square padded images and a fixed number of boxes.

Each image is resized to fit in an `image_size` square, keeping its aspect ratio, and
zero-padded at the bottom and right. Its objects become the label pytree

- `boxes`: float32 `[max_boxes, 4]`, `(cx, cy, w, h)` normalised to the padded square
  (as DETR predicts them);
- `labels`: int32 `[max_boxes]`, TFDS's classes 0..79;
- `box_mask`: float32 `[max_boxes]`, 1.0 for a real box and 0.0 for padding (whose
  box and label are 0).

Crowd annotations and empty boxes are dropped; objects past `max_boxes` are cut (COCO
2017 has at most 93 objects per image). Training flips images and boxes left-right
with probability 1/2; `shorter_sides` and `crop_size_range` add DETR's multi-scale
resizing and random crops (`_detection_augment.py`), the images then zero-padded to the
`image_size` square. Importing this module imports TensorFlow.

Reference: Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014; the box
format of Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020.
"""

import tensorflow as tf

from . import _preprocess as pp
from ._catalogue import _build, _finish, prepared_builder, resolve_splits
from ._checks import check_positive_int, check_square_size
from ._dataset import Dataset
from ._detection_augment import (
    DETR_CROP_SHORTER_SIDES,
    check_size_range,
    check_sizes,
    detr_scale_augment,
    resize_shorter_side,
)


def detection_label(objects: dict, scale: tf.Tensor, max_boxes: int) -> dict:
    """The label pytree of one image's TFDS `objects`.

    Arguments:
        objects: `bbox` float32 `[n, 4]` (`ymin, xmin, ymax, xmax` in [0, 1] of the
            image), `label` int `[n]`, `is_crowd` bool `[n]`.
        scale: float32 `[2]`, the image's `(height, width)` as fractions of the padded
            square (`resize_and_pad`'s second output).
        max_boxes: boxes kept and padded to.

    Returns:
        `{"boxes": [max_boxes, 4], "labels": [max_boxes], "box_mask": [max_boxes]}`.
    """
    # One length for the three sequences: TFDS's `mock_data` draws each one's length
    # independently (real COCO examples always agree, and lose nothing here).
    count = tf.reduce_min([tf.shape(objects[key])[0] for key in ("bbox", "label", "is_crowd")])
    objects = {key: objects[key][:count] for key in ("bbox", "label", "is_crowd")}
    ymin, xmin, ymax, xmax = tf.unstack(objects["bbox"], num=4, axis=-1)
    keep = tf.logical_and(~objects["is_crowd"], tf.logical_and(ymax > ymin, xmax > xmin))
    box = tf.stack(
        [
            (xmin + xmax) / 2 * scale[1],
            (ymin + ymax) / 2 * scale[0],
            (xmax - xmin) * scale[1],
            (ymax - ymin) * scale[0],
        ],
        axis=-1,
    )
    box = tf.boolean_mask(box, keep)[:max_boxes]
    labels = tf.cast(tf.boolean_mask(objects["label"], keep)[:max_boxes], tf.int32)
    padding = max_boxes - tf.shape(labels)[0]
    return {
        "boxes": tf.ensure_shape(tf.pad(box, [[0, padding], [0, 0]]), [max_boxes, 4]),
        "labels": tf.ensure_shape(tf.pad(labels, [[0, padding]]), [max_boxes]),
        "box_mask": tf.ensure_shape(tf.pad(tf.ones_like(labels, tf.float32), [[0, padding]]), [max_boxes]),
    }


def flip_boxes(bbox: tf.Tensor) -> tf.Tensor:
    """`ymin, xmin, ymax, xmax` boxes `[n, 4]` of an image mirrored left-right."""
    ymin, xmin, ymax, xmax = tf.unstack(bbox, num=4, axis=-1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def coco(
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int,
    process_index: int,
    process_count: int,
    data_dir: str | None = None,
    train_split: str | None = None,
    valid_split: str | None = None,
    test_split: str | None = None,
    valid_fraction: float | None = None,
    image_size: int = 512,
    max_boxes: int = 100,
    shorter_sides: tuple[int, ...] | None = None,
    crop_size_range: tuple[int, int] | None = None,
    crop_shorter_sides: tuple[int, ...] = DETR_CROP_SHORTER_SIDES,
    shuffle_buffer_size: int = 10_000,
    cache: bool = False,
    prefetch: int = 2,
) -> Dataset:
    """COCO 2017 detection (80 classes): train on `train`, evaluate on `validation`.

    Arguments:
        image_size: side of the padded square inputs; with `shorter_sides`, also the
            cap on an image's longer side (DETR: 1333).
        max_boxes: boxes per image in the label (at least COCO's 93 keeps every one).
        shorter_sides: DETR's multi-scale training: each training image's shorter side
            is drawn from these (DETR: 480, 512, ..., 800) and evaluation uses the
            largest, the longer side at most `image_size`. `None`: every image is
            resized to fit the `image_size` square.
        crop_size_range: DETR's random crop, `(low, high)` pixels a side (DETR: 384,
            600): with probability 1/2 a training image is first resized to a shorter
            side drawn from `crop_shorter_sides` and a random window with each side in
            that range is cut out; boxes are clipped to it and those left empty dropped.
            `None`: no crop.
        crop_shorter_sides: the shorter sides drawn from before the crop (DETR: 400,
            500, 600).
        The others: as in `small_image_dataset` of `_catalogue.py`.
    """
    image_size = check_square_size("image_size", image_size)
    max_boxes = check_positive_int("max_boxes", max_boxes)
    if shorter_sides is not None:
        shorter_sides = check_sizes("shorter_sides", shorter_sides)
    if crop_size_range is not None:
        crop_size_range = check_size_range("crop_size_range", crop_size_range)
    crop_shorter_sides = check_sizes("crop_shorter_sides", crop_shorter_sides)
    mean, std = pp.IMAGENET_MEAN, pp.IMAGENET_STD
    builder = prepared_builder("coco/2017", data_dir)
    train, valid, test = resolve_splits(
        builder, (train_split, valid_split, test_split), ("train", "validation", "validation"), valid_fraction
    )

    def preprocess(example: dict, seed: tf.Tensor | None = None) -> dict:
        image, objects = example["image"], dict(example["objects"])
        if seed is not None:
            flip = tf.random.stateless_uniform([], seed) < 0.5
            image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
            objects["bbox"] = tf.cond(flip, lambda: flip_boxes(objects["bbox"]), lambda: objects["bbox"])
            if shorter_sides is not None or crop_size_range is not None:
                image, objects["bbox"] = detr_scale_augment(
                    image,
                    objects["bbox"],
                    seed=tf.random.experimental.stateless_fold_in(seed, 1),
                    shorter_sides=shorter_sides,
                    max_size=image_size,
                    crop_size_range=crop_size_range,
                    crop_shorter_sides=crop_shorter_sides,
                )
        elif shorter_sides is not None:
            image = resize_shorter_side(image, max(shorter_sides), max_size=image_size)
        if shorter_sides is None:
            image, scale = pp.resize_and_pad(image, image_size)
        else:
            scale = tf.cast(tf.shape(image)[:2], tf.float32) / image_size
            image = tf.image.pad_to_bounding_box(image, 0, 0, image_size, image_size)
        # The padding stays 0 after normalising: it carries no signal.
        height, width = tf.unstack(tf.cast(tf.round(scale * image_size), tf.int32))
        rows, cols = tf.range(image_size)[:, None], tf.range(image_size)[None, :]
        inside = tf.logical_and(rows < height, cols < width)[..., None]
        inputs = tf.where(inside, _finish(image, mean, std), 0.0)
        return {"inputs": inputs, "label": detection_label(objects, scale, max_boxes)}

    return _build(
        "coco/2017",
        builder,
        train_fn=preprocess,
        eval_fn=preprocess,
        train=train,
        valid=valid,
        test=test,
        state_spec={
            "image_size": image_size,
            "max_boxes": max_boxes,
            "shorter_sides": shorter_sides,
            "crop_size_range": crop_size_range,
            "crop_shorter_sides": crop_shorter_sides,
        },
        num_classes=builder.info.features["objects"]["label"].num_classes,
        max_boxes=max_boxes,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        shuffle_seed=shuffle_seed,
        process_index=process_index,
        process_count=process_count,
        shuffle_buffer_size=shuffle_buffer_size,
        cache=cache,
        prefetch=prefetch,
    )
