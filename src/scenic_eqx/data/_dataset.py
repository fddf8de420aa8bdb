"""The `Dataset` container returned by `get_dataset`."""

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Host-local batches of one dataset, and what a trainer needs to know about it.

    Every batch is a dict of numpy arrays with a leading batch axis: `inputs`
    (float32 `[batch, height, width, channels]`), `label` (int32 `[batch]`) and
    `batch_mask` (float32 `[batch]`, 1.0 for a real example and 0.0 for padding).

    Attributes:
        train_iter: an infinite iterator of shuffled training batches of exactly the
            per-host `batch_size` (no padding: `batch_mask` is all ones). For every
            dataset of `get_dataset` it is a `ResumableIterator`: its position can be
            saved and restored without replaying batches (except a tf.data source that
            cannot be checkpointed, such as `from_generator`: see `_tf_iterator.py`).
        valid_iter: a re-iterable: each `iter(valid_iter)` is one fresh pass over this
            host's share of the validation split, in batches of exactly
            `eval_batch_size`, the last ones zero-padded with `batch_mask` 0.0, so that
            every example is counted exactly once and every host runs as many steps.
        test_iter: the same for the test split.
        meta_data: `num_classes`, `input_shape` (`(-1, height, width, channels)`),
            `input_dtype`, `num_train_examples` and `num_eval_examples` (whole splits,
            over all hosts), `target_is_onehot` and `dataset_name`.
    """

    train_iter: Iterator[Batch]
    valid_iter: Iterable[Batch]
    test_iter: Iterable[Batch]
    meta_data: dict[str, Any]
