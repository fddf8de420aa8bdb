"""Datasets by name: `get_dataset("digits", batch_size=32)`.

Each entry names a TFDS dataset and its splits; adding a TFDS catalogue dataset is one
line, e.g. `"mnist": _Entry("mnist", train="train", valid="test", test="test")`. A
`_Builder` entry instead names a function that builds the `Dataset` itself and declares
the dataset's own arguments (`root`, `image_size`, ...) in its signature.
TensorFlow is imported only inside `get_dataset`.
"""

import dataclasses
import difflib
import importlib
import inspect
import os
from typing import Any

import numpy as np

from ._checks import check_positive_int, check_process, check_seed
from ._dataset import Dataset


@dataclasses.dataclass(frozen=True)
class _Entry:
    tfds_name: str
    train: str
    valid: str
    test: str
    # A module defining (and so registering) a local TFDS builder. Only such datasets
    # are generated on first use: the others need a download this machine cannot make.
    local_builder_module: str | None = None


@dataclasses.dataclass(frozen=True)
class _Builder:
    """A dataset built by `module.function`, not read from a TFDS builder by name.

    The function is called with the keyword arguments `batch_size`, `eval_batch_size`,
    `shuffle_seed`, `process_index` and `process_count` (checked by `get_dataset`) and
    those of `get_dataset`'s `**kwargs` (and `data_dir`, if given) that it declares as
    keyword parameters; it returns the `Dataset`.
    """

    module: str
    function: str


# The arguments that `get_dataset` itself checks and passes to every `_Builder`.
_COMMON_ARGUMENTS = ("batch_size", "eval_batch_size", "shuffle_seed", "process_index", "process_count")

_DATASETS: dict[str, _Entry | _Builder] = {
    # No validation split of its own: `valid_iter` and `test_iter` both read `test`.
    "digits": _Entry("digits", "train", "test", "test", "scenic_eqx.data._digits"),
    # The TFDS catalogue, with each dataset's preprocessing and augmentation; read from
    # `data_dir` where prepared, never downloaded (`mnist` falls back to an offline copy).
    "mnist": _Builder("scenic_eqx.data._catalogue", "mnist"),
    "fashion_mnist": _Builder("scenic_eqx.data._catalogue", "fashion_mnist"),
    "cifar10": _Builder("scenic_eqx.data._catalogue", "cifar10"),
    "cifar100": _Builder("scenic_eqx.data._catalogue", "cifar100"),
    "svhn_cropped": _Builder("scenic_eqx.data._catalogue", "svhn_cropped"),
    "imagenet2012": _Builder("scenic_eqx.data._imagenet", "imagenet2012"),
    "oxford_iiit_pet": _Builder("scenic_eqx.data._pet", "oxford_iiit_pet"),
    "coco/2017": _Builder("scenic_eqx.data._coco", "coco"),
    "arrays": _Builder("scenic_eqx.data._arrays", "arrays_dataset"),
    "image_folder": _Builder("scenic_eqx.data._image_folder", "image_folder_dataset"),
    "video_tfrecord": _Builder("scenic_eqx.data._video", "video_tfrecord_dataset"),
    "synthetic_segmentation": _Builder("scenic_eqx.data._synthetic_segmentation", "synthetic_segmentation_dataset"),
    "synthetic_detection": _Builder("scenic_eqx.data._synthetic_detection", "synthetic_detection_dataset"),
}

# Options of the tf.data pipelines that `get_dataset` passes through (see `_pipeline`).
_TRAIN_OPTIONS = ("shuffle_buffer_size", "cache", "prefetch")
_EVAL_OPTIONS = ("cache", "prefetch")


def list_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(_DATASETS)


def _prepared_builder(name: str, entry: _Entry, data_dir: str | None):
    import tensorflow_datasets as tfds

    from ._catalogue import not_prepared
    from ._tfds_builder import is_readable

    # TFDS reads TFDS_DATA_DIR once, at import; reading it here honours a later setting.
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    if entry.local_builder_module is not None:
        importlib.import_module(entry.local_builder_module)
    builder = tfds.builder(entry.tfds_name, data_dir=data_dir)
    if not is_readable(builder):
        if entry.local_builder_module is None:
            raise not_prepared(name, builder, data_dir)
        # Generated from files already on disk; nothing is downloaded.
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    return builder


def _check_data_dir(data_dir: object) -> str | None:
    if data_dir is None:
        return None
    if not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(
            f"`data_dir` (={data_dir!r}) must be a path (str or os.PathLike) or None. "
            f"Received: {data_dir!r} of type {type(data_dir).__name__}."
        )
    return os.fspath(data_dir)


def get_dataset(
    name: str,
    *,
    batch_size: int,
    eval_batch_size: int | None = None,
    data_dir: str | None = None,
    shuffle_seed: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    **kwargs: Any,
) -> Dataset:
    """Builds the host-local train and eval batches of the registered dataset `name`.

    Arguments:
        name: a name from `list_datasets()`.
        batch_size: training examples per batch on this host.
        eval_batch_size: evaluation examples per batch on this host; defaults to
            `batch_size`.
        data_dir: TFDS data directory; defaults to TFDS's own (`TFDS_DATA_DIR` or
            `~/tensorflow_datasets`). A local dataset such as `digits` is generated
            there on first use.
        shuffle_seed: seed of the training order; the same seed gives the same batches.
        process_index: this host's index; defaults to `jax.process_index()`.
        process_count: the number of hosts; defaults to `jax.process_count()`.
        **kwargs: for a TFDS dataset, pipeline options: `shuffle_buffer_size`
            (training), `cache` and `prefetch` (both). Datasets built otherwise declare
            their own: `arrays` (see `from_arrays`), `image_folder` (see
            `image_folder_dataset`) and `video_tfrecord` (see `video_tfrecord_dataset`);
            `docs/bring_your_own_data.md` shows each. The TFDS catalogue datasets
            (`cifar10`, `imagenet2012`, `coco/2017`, ...) take `shuffle_buffer_size`,
            `cache`, `prefetch`, the splits `train_split`, `valid_split` and
            `test_split` (e.g. `"train[:98%]"`), and their own (`augment`,
            `randaugment`, `image_size`, `task`, `max_boxes`, `manual_dir`; see
            `_catalogue.py`, `_imagenet.py`, `_pet.py` and `_coco.py`).

    Returns:
        A `Dataset`. For `digits`, `valid_iter` and `test_iter` are both passes over
        its test split, which is the only held-out split. Its `train_iter` is a
        `ResumableIterator` (its position saved and restored without replay), except
        for a tf.data source that cannot be checkpointed (see `_tf_iterator.py`).

    Raises:
        ValueError, TypeError, FileNotFoundError: a bad argument, named in the message
            with what was expected and what was received, checked before TensorFlow
            is imported where it can be.
    """
    if not isinstance(name, str) or name not in _DATASETS:
        close = difflib.get_close_matches(str(name), _DATASETS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown dataset `name` (={name!r}).{hint} "
            f"Known datasets: {', '.join(list_datasets())}. Received: {name!r}."
        )
    # Checked before the dataset's module (and TensorFlow) is imported.
    batch_size = check_positive_int("batch_size", batch_size)
    eval_batch_size = check_positive_int(
        "eval_batch_size", batch_size if eval_batch_size is None else eval_batch_size
    )
    shuffle_seed = check_seed("shuffle_seed", shuffle_seed)
    data_dir = _check_data_dir(data_dir)
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    process_index, process_count = check_process(process_index, process_count)
    entry = _DATASETS[name]
    if isinstance(entry, _Builder):
        build = getattr(importlib.import_module(entry.module), entry.function)
        if data_dir is not None:
            kwargs = {**kwargs, "data_dir": data_dir}
        known = [
            p.name
            for p in inspect.signature(build).parameters.values()
            if p.kind == p.KEYWORD_ONLY and p.name not in _COMMON_ARGUMENTS
        ]
    else:
        known = _TRAIN_OPTIONS
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TypeError(
            f"Unknown option(s) {', '.join(unknown)} for `get_dataset` of {name!r}; "
            f"known: {', '.join(known)}. Received: "
            f"{', '.join(f'{key}={kwargs[key]!r}' for key in unknown)}."
        )
    if isinstance(entry, _Builder):
        return build(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            shuffle_seed=shuffle_seed,
            process_index=process_index,
            process_count=process_count,
            **kwargs,
        )

    from . import _pipeline

    builder = _prepared_builder(name, entry, data_dir)
    hosts = {"process_index": process_index, "process_count": process_count}
    eval_options = {k: v for k, v in kwargs.items() if k in _EVAL_OPTIONS}

    def eval_batches(split: str) -> _pipeline.EvalBatches:
        return _pipeline.eval_batches(
            builder, split, batch_size=eval_batch_size, **hosts, **eval_options
        )

    valid_iter = eval_batches(entry.valid)
    test_iter = valid_iter if entry.test == entry.valid else eval_batches(entry.test)
    train_iter = _pipeline.train_batches(
        builder, entry.train, batch_size=batch_size, shuffle_seed=shuffle_seed, **hosts, **kwargs
    )
    inputs_spec = valid_iter.element_spec["inputs"]
    meta_data = {
        "num_classes": builder.info.features["label"].num_classes,
        "input_shape": (-1, *inputs_spec.shape[1:]),
        "input_dtype": np.dtype(inputs_spec.dtype.as_numpy_dtype).type,
        "num_train_examples": _pipeline.split_size(builder, entry.train),
        "num_eval_examples": _pipeline.split_size(builder, entry.valid),
        "target_is_onehot": False,
        "dataset_name": name,
    }
    return Dataset(train_iter, valid_iter, test_iter, meta_data)
