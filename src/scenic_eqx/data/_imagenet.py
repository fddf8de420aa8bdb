"""`imagenet2012`: ImageNet-1k, prepared offline from its manual download if needed.

Training: inception crop (decoding only the cropped window of each JPEG) and flip, with
optional RandAugment; evaluation: the central crop. Importing this module imports
TensorFlow.

Reference: Russakovsky et al., "ImageNet Large Scale Visual Recognition Challenge",
IJCV 2015.
"""

import os

import tensorflow as tf
import tensorflow_datasets as tfds

from . import _preprocess as pp
from ._catalogue import (
    _build,
    _data_dir,
    _finish,
    _label,
    _maybe_randaugment,
    center_crop,
    not_prepared,
    resolve_splits,
)
from ._checks import check_square_size
from ._dataset import Dataset
from ._tfds_builder import is_readable

IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


def imagenet2012(
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
        The others: as in `_catalogue.small_image_dataset`; the decoded split is too large
            to cache.
    """
    image_size = check_square_size("image_size", image_size)
    data_dir = _data_dir(data_dir)
    builder = tfds.builder("imagenet2012", data_dir=data_dir)
    if not is_readable(builder):
        if data_dir is not None and not os.path.isdir(data_dir):
            raise not_prepared("imagenet2012", builder, data_dir)
        # TFDS's default: `downloads/manual` under the data dir root.
        root = os.path.dirname(os.path.dirname(builder.data_dir))
        manual_dir = manual_dir or os.path.join(root, "downloads", "manual")
        missing = [f for f in IMAGENET_MANUAL_FILES if not os.path.exists(os.path.join(manual_dir, f))]
        if missing:
            raise FileNotFoundError(
                f"Dataset 'imagenet2012' is not prepared in {builder.data_dir} and its manual "
                f"download is missing: put {' and '.join(IMAGENET_MANUAL_FILES)} (from "
                f"https://image-net.org/) in `manual_dir` (={manual_dir!r}; missing: "
                f"{', '.join(missing)}) and call again: it is then prepared from them, "
                "offline; or pass the `data_dir` where it is prepared. Received: "
                f"`manual_dir`={manual_dir!r}, `data_dir`={data_dir!r}."
            )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
        )
    mean, std = pp.IMAGENET_MEAN, pp.IMAGENET_STD

    def train_fn(example: dict, seed: tf.Tensor) -> dict:
        crop_seed, flip_seed, ra_seed = tf.unstack(pp.split_seed(seed, 3))
        image = pp.decode_and_inception_crop(example["image"], image_size, seed=crop_seed)
        image = _maybe_randaugment(pp.random_flip(image, seed=flip_seed), ra_seed, randaugment)
        return {"inputs": _finish(image, mean, std), "label": _label(example)}

    def eval_fn(example: dict) -> dict:
        image = center_crop(pp.decode(example["image"]), image_size)
        return {"inputs": _finish(image, mean, std), "label": _label(example)}

    train, valid, test = resolve_splits(
        builder, (train_split, valid_split, test_split), ("train", "validation", "validation"), valid_fraction
    )
    return _build(
        "imagenet2012",
        builder,
        train_fn=train_fn,
        eval_fn=eval_fn,
        train=train,
        valid=valid,
        test=test,
        state_spec={"image_size": image_size, "randaugment": randaugment},
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
