"""`synthetic_detection`: random discs, squares and triangles with their exact boxes.

The images of `synthetic_segmentation` (one to three upright shapes of random class,
size, position and colour on a noisy background, without overlap), labelled for
detection: each shape's box is the tightest box around the pixels of its mask, and its
class is its shape (0 disc, 1 square, 2 triangle). Colours carry no class information.

Labels follow the `coco/2017` layout, so the same `DetectionTask` trains on both:
`{"boxes": float32 [max_boxes, 4] (cx, cy, w, h) in [0, 1], "labels": int32
[max_boxes], "box_mask": float32 [max_boxes]}`, padded to `MAX_SHAPES` boxes.

Generated in memory with numpy: no download, no TensorFlow; deterministic given `seed`.
"""

import numpy as np

from ._checks import check_process
from ._dataset import Dataset
from ._holdout import check_valid_fraction, held_out_arrays
from ._in_memory import EvalBatches, train_batches
from ._meta_data import MetaData
from ._synthetic_segmentation import (
    CLASS_NAMES as _SEGMENTATION_CLASSES,
    MAX_SHAPES,
    check_options,
    sample_example,
    shape_mask,
)

CLASS_NAMES = _SEGMENTATION_CLASSES[1:]  # No background class in detection.


def shape_box(mask: np.ndarray) -> np.ndarray:
    """The tightest `(cx, cy, w, h)` box around the `True` pixels of `mask`, in [0, 1].

    Pixel `(row, col)` covers `[col, col + 1) x [row, row + 1)`; coordinates are
    divided by the image size.
    """
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    height, width = mask.shape
    x0, x1 = cols[0] / width, (cols[-1] + 1) / width
    y0, y1 = rows[0] / height, (rows[-1] + 1) / height
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], np.float32)


def generate(num_examples: int, *, image_size: int, seed: int, split: str) -> dict:
    """The first `num_examples` examples of `split`.

    Returns:
        `{"inputs": float32 [n, size, size, 3], "label": {"boxes": [n, MAX_SHAPES, 4],
        "labels": [n, MAX_SHAPES], "box_mask": [n, MAX_SHAPES]}}`.
    """
    images = np.zeros((num_examples, image_size, image_size, 3), np.float32)
    boxes = np.zeros((num_examples, MAX_SHAPES, 4), np.float32)
    labels = np.zeros((num_examples, MAX_SHAPES), np.int32)
    box_mask = np.zeros((num_examples, MAX_SHAPES), np.float32)
    for i in range(num_examples):
        images[i], _, shapes = sample_example(image_size, seed, split, i)
        for j, shape in enumerate(shapes):
            boxes[i, j] = shape_box(shape_mask(shape, image_size))
            labels[i, j] = shape.class_index - 1
            box_mask[i, j] = 1.0
    return {"inputs": images, "label": {"boxes": boxes, "labels": labels, "box_mask": box_mask}}


def synthetic_detection_dataset(
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    image_size: int = 32,
    num_train_examples: int = 4096,
    num_test_examples: int = 512,
    seed: int = 0,
    valid_fraction: float | None = None,
) -> Dataset:
    """The synthetic shapes detection dataset: 3 classes, up to 3 boxes per image.

    Arguments:
        batch_size: training examples per batch on this host.
        eval_batch_size: evaluation examples per batch on this host.
        shuffle_seed: seed of the training order.
        process_index: this host's index.
        process_count: the number of hosts.
        image_size: height and width of the images (at least 8).
        num_train_examples: size of the training split (all hosts).
        num_test_examples: size of the held-out split (all hosts).
        seed: seed of the images: the same seed gives the same dataset.
        valid_fraction: if given, a float in (0, 1): the last `round(valid_fraction *
            num_train_examples)` training examples are held out as the validation
            split (see `_holdout.py`).

    Returns:
        A `Dataset` whose batches hold `inputs` float32 `[batch, size, size, 3]`, the
        `label` dict (module docstring) and `batch_mask` `[batch]`. There is one
        held-out split: `valid_iter` and `test_iter` are both passes over it, unless
        `valid_fraction` holds out part of the training split.
    """
    image_size, num_train_examples, num_test_examples, seed = check_options(
        image_size, num_train_examples, num_test_examples, seed
    )
    process_index, process_count = check_process(process_index, process_count)
    hosts = {"process_index": process_index, "process_count": process_count}
    valid_fraction = check_valid_fraction(valid_fraction)
    train = generate(num_train_examples, image_size=image_size, seed=seed, split="train")
    train, valid, valid_source = held_out_arrays(train, valid_fraction)
    train_iter = train_batches(
        train,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        state_spec={"dataset": "synthetic_detection", "image_size": image_size, "seed": seed},
        **hosts,
    )
    test = generate(num_test_examples, image_size=image_size, seed=seed, split="test")
    test_iter = EvalBatches(test, batch_size=eval_batch_size, **hosts)
    valid_iter = test_iter if valid is None else EvalBatches(valid, batch_size=eval_batch_size, **hosts)
    meta_data = MetaData(
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        max_boxes=MAX_SHAPES,
        input_shape=(-1, image_size, image_size, 3),
        input_dtype=np.float32,
        num_train_examples=len(train["inputs"]),
        num_eval_examples=num_test_examples if valid is None else len(valid["inputs"]),
        target_is_onehot=False,
        dataset_name="synthetic_detection",
        valid_source=valid_source,
    )
    return Dataset(train_iter, valid_iter, test_iter, meta_data)
