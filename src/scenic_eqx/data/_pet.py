"""`oxford_iiit_pet`: 37 cat and dog breeds, or pet/background/border masks.

Importing this module imports TensorFlow.

Reference: Parkhi et al., "Cats and Dogs", CVPR 2012.
"""

import tensorflow as tf

from . import _preprocess as pp
from ._catalogue import _build, _finish, _label, center_crop, prepared_builder, resolve_splits
from ._checks import check_square_size
from ._dataset import Dataset

PET_CLASSES = ("pet", "background", "border")  # TFDS mask values 1, 2, 3


def oxford_iiit_pet(
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
    task: str = "classification",
    image_size: int = 224,
    shuffle_buffer_size: int = 10_000,
    cache: bool = False,
    prefetch: int = 2,
) -> Dataset:
    """Oxford-IIIT Pet: 37 breeds, or per-pixel pet/background/border masks.

    Arguments:
        task: `"classification"` (label: the breed) or `"segmentation"` (label: int32
            `[image_size, image_size]`, 0 pet, 1 background, 2 border; images and masks
            resized to the square, flipped together for training).
        image_size: side of the square inputs.
        The others: as in `_catalogue.small_image_dataset`.

    Reference: Parkhi et al., "Cats and Dogs", CVPR 2012.
    """
    if task not in ("classification", "segmentation"):
        raise ValueError(
            f"`task` (={task!r}) must be 'classification' or 'segmentation'. Received: {task!r}."
        )
    image_size = check_square_size("image_size", image_size)
    mean, std = pp.IMAGENET_MEAN, pp.IMAGENET_STD
    builder = prepared_builder("oxford_iiit_pet", data_dir)

    def classify_train(example: dict, seed: tf.Tensor) -> dict:
        crop_seed, flip_seed = tf.unstack(pp.split_seed(seed, 2))
        image = pp.inception_crop(example["image"], image_size, seed=crop_seed)
        image = pp.random_flip(image, seed=flip_seed)
        return {"inputs": _finish(image, mean, std), "label": _label(example)}

    def classify_eval(example: dict) -> dict:
        return {
            "inputs": _finish(center_crop(example["image"], image_size), mean, std),
            "label": _label(example),
        }

    def segment(example: dict, seed: tf.Tensor | None = None) -> dict:
        image = pp.resize(example["image"], image_size)
        mask = tf.cast(pp.resize(example["segmentation_mask"], image_size, method="nearest"), tf.float32)
        if seed is not None:
            # Flipped as one image, so that the mask stays on the pet.
            both = pp.random_flip(tf.concat([image, mask], axis=-1), seed=seed)
            image, mask = both[..., :3], both[..., 3:]
        label = tf.cast(mask[..., 0], tf.int32) - 1
        return {"inputs": _finish(image, mean, std), "label": label}

    if task == "classification":
        fns, meta = {"train_fn": classify_train, "eval_fn": classify_eval}, {}
    else:
        fns = {"train_fn": segment, "eval_fn": segment}
        meta = {"num_classes": len(PET_CLASSES), "class_names": PET_CLASSES}
    train, valid, test = resolve_splits(
        builder, (train_split, valid_split, test_split), ("train", "test", "test"), valid_fraction
    )
    return _build(
        "oxford_iiit_pet",
        builder,
        **fns,
        train=train,
        valid=valid,
        test=test,
        state_spec={"task": task, "image_size": image_size},
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        shuffle_seed=shuffle_seed,
        process_index=process_index,
        process_count=process_count,
        shuffle_buffer_size=shuffle_buffer_size,
        cache=cache,
        prefetch=prefetch,
        **meta,
    )
