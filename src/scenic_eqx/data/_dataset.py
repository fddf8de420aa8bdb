"""The `Dataset` container returned by `get_dataset`."""

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ._meta_data import MetaData

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Host-local batches of one dataset, and what a trainer needs to know about it.

    Every batch is a dict of numpy arrays with a leading batch axis: `inputs`
    (float32 `[batch, height, width, channels]`), `label` (int32 class indices
    `[batch]`; or the dataset's own label: int32 masks `[batch, height, width]`,
    float32 targets `[batch, ...]`, or a dict of such arrays, as detection's boxes) and
    `batch_mask` (float32 `[batch]`, 1.0 for a real example and 0.0 for padding).

    Attributes:
        train_iter: an infinite iterator of shuffled training batches of exactly the
            per-host `batch_size` (no padding: `batch_mask` is all ones). For every
            dataset of `get_dataset` it is a `ResumableIterator`: its position can be
            saved and restored without replaying batches (except a tf.data source that
            cannot be checkpointed, such as `from_generator`: see `_tf_iterator.py`).
        valid_iter: a re-iterable: each `iter(valid_iter)` is one fresh pass over this
            host's share of the validation split (the test split itself, as the same
            object as `test_iter`, for a dataset without validation data unless
            `valid_fraction` holds out part of the training split), in batches of exactly
            `eval_batch_size`, the last ones zero-padded with `batch_mask` 0.0, so that
            every example is counted exactly once and every host runs as many steps.
        test_iter: the same for the test split.
        meta_data: a `MetaData` (given as one or as a dict, which is converted and
            checked): `num_classes` (for class labels; absent where it means nothing,
            as for regression targets), `input_shape` (`(-1, height, width,
            channels)`), `input_dtype`, `num_train_examples` and `num_eval_examples`
            (the training and validation splits, whole, over all hosts),
            `dataset_name`, `valid_source` (the split `valid_iter` reads, `"test"`, a
            validation split of the dataset's own, or `"train[k:]"` held out by
            `valid_fraction`) and the optional fields of `MetaData`.
    """

    train_iter: Iterator[Batch]
    valid_iter: Iterable[Batch]
    test_iter: Iterable[Batch]
    meta_data: MetaData | dict[str, Any]

    def __post_init__(self):
        object.__setattr__(self, "meta_data", MetaData.of(self.meta_data))
