"""`image_folder`: a `Dataset` from image files laid out as `root/<split>/<class>/<image>`.

Listing and labelling are TFDS's folder builder (`tfds.folder_dataset.ImageFolder`):
classes are the sorted names of the class folders (over all splits), and each split's
files are in a fixed pseudo-random order. Images are decoded here (PNG, JPEG, GIF or
BMP, any size) and resized to one `image_size`, then go through the shared
train/eval pipelines of `_pipeline`. Importing this module imports TensorFlow.
"""

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from . import _pipeline
from ._checks import check_positive_int
from ._dataset import Dataset
from ._holdout import check_valid_fraction, held_out_sizes
from ._meta_data import MetaData


def _image_size(value) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        height, width = (check_positive_int("image_size", v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(
            f"`image_size` (={value!r}) must be a positive int or a (height, width) pair of "
            f"them. Received: {value!r} of type {type(value).__name__}."
        ) from None
    return height, width


def _split_source(builder, root: str, split: str) -> tuple[tf.data.Dataset, int]:
    if split not in builder.info.splits:
        raise FileNotFoundError(
            f"`root` (={root!r}) has no split folder {split!r} holding class folders of "
            f"images (.png, .jpg, .jpeg); found: {sorted(builder.info.splits) or 'none'}."
        )
    num_examples = builder.info.splits[split].num_examples
    if num_examples == 0:
        raise ValueError(f"Split folder {os.path.join(root, split)!r} has no images.")
    # Files are decoded after the host split, so each host decodes only its own share.
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    return ds, num_examples


def image_folder_dataset(
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int,
    process_index: int,
    process_count: int,
    root: str,
    image_size: int | Sequence[int],
    channels: int = 3,
    train_split: str = "train",
    test_split: str = "test",
    valid_fraction: float | None = None,
    shuffle_buffer_size: int = 10_000,
    cache: bool = True,
    prefetch: int = 2,
) -> Dataset:
    """The `image_folder` entry of `get_dataset`: images in `root/<split>/<class>/`.

    Arguments:
        batch_size, eval_batch_size, shuffle_seed, process_index, process_count: as in
            `get_dataset`.
        root: the folder holding one folder per split, each holding one folder per class.
        image_size: `(height, width)` (or one int for both) every image is resized to
            (bilinear, antialiased; the aspect ratio is not kept).
        channels: 3 (RGB; grey images are repeated) or 1 (grey; colour images converted).
        train_split: the split folder trained on.
        test_split: the held-out split folder; `valid_iter` and `test_iter` both pass
            over it, unless `valid_fraction` is given.
        valid_fraction: if given, a float in (0, 1): the last `round(valid_fraction *
            n)` of the `n` training images (in the folder builder's fixed order) are
            held out as the validation split (see `_holdout.py`).
        shuffle_buffer_size, cache, prefetch: as in `get_dataset` (`cache` keeps the
            encoded files in memory).

    Returns:
        A `Dataset` of `inputs` float32 `[batch, height, width, channels]` in [0, 1] and
        `label` int32; `meta_data["class_names"]` are the class folder names, label `i`
        being `class_names[i]`.
    """
    root = os.path.expanduser(os.fspath(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"`root` (={root!r}) is not a directory.")
    height, width = _image_size(image_size)
    if channels not in (1, 3):
        raise ValueError(f"`channels` (={channels!r}) must be 1 or 3.")
    builder = tfds.folder_dataset.ImageFolder(root)
    class_names = list(builder.info.features["label"].names)
    train_ds, num_train = _split_source(builder, root, train_split)
    test_ds, num_test = _split_source(builder, root, test_split)
    valid_fraction = check_valid_fraction(valid_fraction)
    valid_ds, num_valid, valid_source = test_ds, num_test, "test"
    if valid_fraction is not None:
        num_kept, num_valid = held_out_sizes(num_train, valid_fraction, split=train_split)
        # Files are listed in a fixed order (`shuffle_files=False`): the TFDS slices
        # `train[:k]` and `train[k:]`.
        train_ds, valid_ds = train_ds.take(num_kept), train_ds.skip(num_kept)
        num_train, valid_source = num_kept, f"{train_split}[{num_kept}:]"

    # Graph code already: AutoGraph has nothing to convert (and cannot read this source
    # under the jaxtyping import hook of the tests).
    @tf.autograph.experimental.do_not_convert
    def preprocess(example: dict) -> dict:
        image = tf.io.decode_image(example["image"], channels=channels, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (height, width), antialias=True)
        return {
            "inputs": tf.ensure_shape(image / 255.0, (height, width, channels)),
            "label": tf.cast(example["label"], tf.int32),
        }

    # Equal shares, the remainder dropped, as `tfds.even_splits(..., drop_remainder=True)`.
    share = num_train // process_count
    if share == 0:
        raise ValueError(
            f"Split {train_split!r} has {num_train} images: none for each of "
            f"`process_count` (={process_count}) hosts."
        )
    train_ds = train_ds.take(share * process_count).shard(process_count, process_index)
    train_iter = _pipeline.train_pipeline(
        train_ds,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        preprocess_fn=preprocess,
        shuffle_buffer_size=shuffle_buffer_size,
        cache=cache,
        prefetch=prefetch,
    )

    def eval_batches(ds: tf.data.Dataset, num_examples: int) -> _pipeline.EvalBatches:
        return _pipeline.eval_pipeline(
            ds.shard(process_count, process_index),
            host_counts=_pipeline.even_shares(num_examples, process_count),
            process_index=process_index,
            batch_size=eval_batch_size,
            preprocess_fn=preprocess,
            cache=cache,
            prefetch=prefetch,
        )

    test_iter = eval_batches(test_ds, num_test)
    valid_iter = test_iter if valid_ds is test_ds else eval_batches(valid_ds, num_valid)
    meta_data = MetaData(
        num_classes=len(class_names),
        class_names=class_names,
        input_shape=(-1, height, width, channels),
        input_dtype=np.float32,
        num_train_examples=num_train,
        num_eval_examples=num_valid,
        target_is_onehot=False,
        dataset_name="image_folder",
        valid_source=valid_source,
    )
    return Dataset(train_iter, valid_iter, test_iter, meta_data)
