"""TFDS catalogue datasets: each one's splits, preprocessing and augmentation.

`get_dataset("cifar10", batch_size=...)` and the like land here (see `_registry.py`).
Training reads this host's share of the split, caches it as TFDS decodes it, repeats,
shuffles, then augments each example with a fresh stateless seed (so augmentation is
not cached and differs across epochs, yet the same `shuffle_seed` gives the same
batches) and batches with `drop_remainder`. Evaluation preprocesses without randomness
and pads the last batches with `batch_mask` 0.0 (see `_pipeline.py`).

| name | inputs | label | train augmentation |
|---|---|---|---|
| `mnist`, `fashion_mnist` | `[28, 28, 1]` in [0, 1] | class | none |
| `cifar10`, `cifar100` | `[32, 32, 3]`, mean/std normalised | class | pad-4 crop, flip |
| `svhn_cropped` | `[32, 32, 3]` in [0, 1] | class | none (digits do not flip) |
| `imagenet2012` | `[224, 224, 3]`, mean/std | class | inception crop, flip |
| `oxford_iiit_pet` | `[224, 224, 3]`, mean/std | class, or `[224, 224]` mask | inception crop or resize, flip |
| `coco/2017` | `[512, 512, 3]`, mean/std, padded | boxes (see `_coco.py`) | flip |

`mnist` reads TFDS's `mnist` when it is prepared in `data_dir`, else the offline copy
of `_mnist.py`. Importing this module imports TensorFlow.
"""

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from . import _pipeline
from . import _preprocess as pp
from ._dataset import Dataset
from ._randaugment import randaugment as _randaugment

# Eval resizes the shorter side to `image_size / CROP_FRACTION`, then crops the centre.
CROP_FRACTION = 0.875
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
PET_CLASSES = ("pet", "background", "border")  # TFDS mask values 1, 2, 3


@dataclasses.dataclass(frozen=True)
class _Small:
    """A dataset of small fixed-size images: how to normalise and augment it."""

    train: str = "train"
    valid: str = "test"
    mean: tuple[float, ...] | None = None  # None: values in [0, 1]
    std: tuple[float, ...] | None = None
    crop_pad: int = 0
    flip: bool = False


_SMALL = {
    "mnist": _Small(),
    "fashion_mnist": _Small(),
    "cifar10": _Small(mean=pp.CIFAR10_MEAN, std=pp.CIFAR10_STD, crop_pad=4, flip=True),
    "cifar100": _Small(mean=pp.CIFAR100_MEAN, std=pp.CIFAR100_STD, crop_pad=4, flip=True),
    "svhn_cropped": _Small(),
}


def _data_dir(data_dir: str | None) -> str | None:
    # TFDS reads TFDS_DATA_DIR once, at import; reading it here honours a later setting.
    return data_dir or os.environ.get("TFDS_DATA_DIR") or None


def _not_prepared(name: str, builder) -> FileNotFoundError:
    return FileNotFoundError(
        f"Dataset {name!r} is not prepared in {builder.data_dir}; this machine cannot "
        f"download it. Prepare it where there is internet (`tfds build {name} --data_dir "
        "DIR`), copy DIR here and pass `data_dir` (or set TFDS_DATA_DIR)."
    )


def prepared_builder(name: str, data_dir: str | None):
    """The TFDS builder of `name`, which must be prepared in `data_dir` (never downloaded).

    `mnist` falls back to the offline `mnist_offline` (generated on first use).
    """
    builder = tfds.builder(name, data_dir=_data_dir(data_dir))
    if builder.is_prepared():
        return builder
    if name != "mnist":
        raise _not_prepared(name, builder)
    from . import _mnist

    _mnist.wheel_data_path()  # fails early, saying how to install the wheel
    builder = tfds.builder("mnist_offline", data_dir=_data_dir(data_dir))
    if not builder.is_prepared():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    return builder


def _finish(image, mean, std) -> tf.Tensor:
    image = pp.value_range(image)
    return image if mean is None else pp.normalize(image, mean, std)


def _maybe_randaugment(image, seed, randaugment: tuple[int, int | float] | None):
    if randaugment is None:
        return image
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return _randaugment(image, seed=seed, num_layers=randaugment[0], magnitude=randaugment[1])


def _label(example) -> tf.Tensor:
    return tf.cast(example["label"], tf.int32)


def _build(
    name: str,
    builder,
    *,
    train_fn: Callable,
    eval_fn: Callable,
    train: str,
    valid: str,
    test: str,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int,
    process_index: int,
    process_count: int,
    shuffle_buffer_size: int,
    cache: bool,
    prefetch: int,
    decoders: dict | None = None,
    num_classes: int | None = None,
    **meta: Any,
) -> Dataset:
    hosts = {"process_index": process_index, "process_count": process_count}
    options = {"cache": cache, "prefetch": prefetch, "decoders": decoders}

    def eval_batches(split: str) -> _pipeline.EvalBatches:
        return _pipeline.eval_batches(
            builder, split, batch_size=eval_batch_size, preprocess_fn=eval_fn, **hosts, **options
        )

    valid_iter = eval_batches(valid)
    test_iter = valid_iter if test == valid else eval_batches(test)
    train_iter = _pipeline.train_batches(
        builder,
        train,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        shuffle_buffer_size=shuffle_buffer_size,
        random_preprocess_fn=train_fn,
        **hosts,
        **options,
    )
    inputs_spec = valid_iter.element_spec["inputs"]
    meta_data = {
        "num_classes": num_classes or builder.info.features["label"].num_classes,
        "input_shape": (-1, *inputs_spec.shape[1:]),
        "input_dtype": np.dtype(inputs_spec.dtype.as_numpy_dtype).type,
        "num_train_examples": builder.info.splits[train].num_examples,
        "num_eval_examples": builder.info.splits[valid].num_examples,
        "target_is_onehot": False,
        "dataset_name": name,
        **meta,
    }
    return Dataset(train_iter, valid_iter, test_iter, meta_data)


def small_image_dataset(
    name: str,
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int,
    process_index: int,
    process_count: int,
    data_dir: str | None = None,
    augment: bool = True,
    randaugment: tuple[int, int | float] | None = None,
    shuffle_buffer_size: int = 10_000,
    cache: bool = True,
    prefetch: int = 2,
) -> Dataset:
    """`mnist`, `fashion_mnist`, `cifar10`, `cifar100` or `svhn_cropped` (see the table).

    Arguments:
        name: the TFDS name.
        augment: apply the dataset's standard augmentation (see the module's table).
        randaugment: `(num_layers, magnitude)` to add RandAugment (RGB datasets only).
        shuffle_buffer_size, cache, prefetch: as in `_pipeline.train_batches`.
        The other arguments are `get_dataset`'s.
    """
    spec = _SMALL[name]

    def train_fn(example: dict, seed: tf.Tensor) -> dict:
        crop_seed, flip_seed, ra_seed = tf.unstack(pp.split_seed(seed, 3))
        image = example["image"]
        if augment and spec.crop_pad:
            image = pp.random_crop_with_pad(image, seed=crop_seed, pad=spec.crop_pad)
        if augment and spec.flip:
            image = pp.random_flip(image, seed=flip_seed)
        image = _maybe_randaugment(image, ra_seed, randaugment)
        return {"inputs": _finish(image, spec.mean, spec.std), "label": _label(example)}

    def eval_fn(example: dict) -> dict:
        return {"inputs": _finish(example["image"], spec.mean, spec.std), "label": _label(example)}

    builder = prepared_builder(name, data_dir)
    return _build(
        name,
        builder,
        train_fn=train_fn,
        eval_fn=eval_fn,
        train=spec.train,
        valid=spec.valid,
        test=spec.valid,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        shuffle_seed=shuffle_seed,
        process_index=process_index,
        process_count=process_count,
        shuffle_buffer_size=shuffle_buffer_size,
        cache=cache,
        prefetch=prefetch,
    )


mnist = functools.partial(small_image_dataset, "mnist")
fashion_mnist = functools.partial(small_image_dataset, "fashion_mnist")
cifar10 = functools.partial(small_image_dataset, "cifar10")
cifar100 = functools.partial(small_image_dataset, "cifar100")
svhn_cropped = functools.partial(small_image_dataset, "svhn_cropped")


def _center(image, image_size: int) -> tf.Tensor:
    image = pp.resize_small(image, round(image_size / CROP_FRACTION))
    return pp.central_crop(image, image_size)


def imagenet2012(
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int,
    process_index: int,
    process_count: int,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_size: int = 224,
    randaugment: tuple[int, int | float] | None = None,
    shuffle_buffer_size: int = 10_000,
    cache: bool = False,
    prefetch: int = 2,
) -> Dataset:
    """ImageNet-1k (ILSVRC 2012): inception crop and flip for training, centre crop for eval.

    TFDS cannot download ImageNet. Unless `imagenet2012` is prepared in `data_dir`, put
    `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar` (from image-net.org) in
    `manual_dir` (default `DATA_DIR/downloads/manual`): the first call prepares the
    dataset from them, offline (it takes hours). Training decodes only the cropped
    window of each JPEG.

    Arguments:
        manual_dir: the folder holding the two tar files.
        image_size: side of the square inputs.
        randaugment: `(num_layers, magnitude)` to add RandAugment.
        The others: as in `small_image_dataset`; the decoded split is too large to cache.
    """
    builder = tfds.builder("imagenet2012", data_dir=_data_dir(data_dir))
    if not builder.is_prepared():
        # TFDS's default: `downloads/manual` under the data dir root.
        root = os.path.dirname(os.path.dirname(builder.data_dir))
        manual_dir = manual_dir or os.path.join(root, "downloads", "manual")
        missing = [
            f for f in IMAGENET_MANUAL_FILES if not os.path.exists(os.path.join(manual_dir, f))
        ]
        if missing:
            raise FileNotFoundError(
                f"Dataset 'imagenet2012' is not prepared in {builder.data_dir} and its manual "
                f"download is missing: put {' and '.join(IMAGENET_MANUAL_FILES)} (from "
                f"https://image-net.org/) in `manual_dir` (={manual_dir!r}; missing: "
                f"{', '.join(missing)}) and call again: it is then prepared from them, "
                "offline; or pass the `data_dir` where it is prepared."
            )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir, try_download_gcs=False
            )
        )
    mean, std = pp.IMAGENET_MEAN, pp.IMAGENET_STD

    def train_fn(example: dict, seed: tf.Tensor) -> dict:
        crop_seed, flip_seed, ra_seed = tf.unstack(pp.split_seed(seed, 3))
        image = pp.decode_and_inception_crop(example["image"], image_size, seed=crop_seed)
        image = _maybe_randaugment(pp.random_flip(image, seed=flip_seed), ra_seed, randaugment)
        return {"inputs": _finish(image, mean, std), "label": _label(example)}

    def eval_fn(example: dict) -> dict:
        image = _center(pp.decode(example["image"]), image_size)
        return {"inputs": _finish(image, mean, std), "label": _label(example)}

    return _build(
        "imagenet2012",
        builder,
        train_fn=train_fn,
        eval_fn=eval_fn,
        train="train",
        valid="validation",
        test="validation",
        decoders={"image": tfds.decode.SkipDecoding()},
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        shuffle_seed=shuffle_seed,
        process_index=process_index,
        process_count=process_count,
        shuffle_buffer_size=shuffle_buffer_size,
        cache=cache,
        prefetch=prefetch,
    )


def oxford_iiit_pet(
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int,
    process_index: int,
    process_count: int,
    data_dir: str | None = None,
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
        The others: as in `small_image_dataset`.

    Reference: Parkhi et al., "Cats and Dogs", CVPR 2012.
    """
    if task not in ("classification", "segmentation"):
        raise ValueError(f"`task` (={task!r}) must be 'classification' or 'segmentation'.")
    pp.image_size("image_size", image_size)
    mean, std = pp.IMAGENET_MEAN, pp.IMAGENET_STD
    builder = prepared_builder("oxford_iiit_pet", data_dir)

    def classify_train(example: dict, seed: tf.Tensor) -> dict:
        crop_seed, flip_seed = tf.unstack(pp.split_seed(seed, 2))
        image = pp.inception_crop(example["image"], image_size, seed=crop_seed)
        image = pp.random_flip(image, seed=flip_seed)
        return {"inputs": _finish(image, mean, std), "label": _label(example)}

    def classify_eval(example: dict) -> dict:
        return {
            "inputs": _finish(_center(example["image"], image_size), mean, std),
            "label": _label(example),
        }

    def segment(example: dict, seed: tf.Tensor | None = None) -> dict:
        image = pp.resize(example["image"], image_size)
        mask = tf.cast(
            pp.resize(example["segmentation_mask"], image_size, method="nearest"), tf.float32
        )
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
    return _build(
        "oxford_iiit_pet",
        builder,
        **fns,
        train="train",
        valid="test",
        test="test",
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
