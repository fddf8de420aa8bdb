"""Datasets: host-local numpy batches from TFDS/tf.data pipelines, padded with `batch_mask`.

Importing this package does not import TensorFlow; `get_dataset` does, when it builds a
pipeline. Per-example `tf.data` ops (crops, flips, RandAugment, ...) are in
`scenic_eqx.data.ops`, which imports TensorFlow; batch ops (`mixup`, `cutmix`) are here
and need none. Placing batches on devices is the loops' business
(`scenic_eqx.loops.prefetch_to_mesh`): this package imports nothing from `scenic_eqx.loops`.
`ResumableIterator` is the protocol of a `train_iter` whose position is saved and restored
without replaying batches.
"""

from ._arrays import from_arrays as from_arrays
from ._bpe_tokenizer import BPETokenizer as BPETokenizer, tokenize_text as tokenize_text
from ._co_training import (
    co_training_batches as co_training_batches,
    co_training_eval_batches as co_training_eval_batches,
)
from ._dataset import Dataset as Dataset
from ._meta_data import MetaData as MetaData
from ._mix import cutmix as cutmix, mixup as mixup
from ._padding import pad_batch as pad_batch
from ._registry import get_dataset as get_dataset, list_datasets as list_datasets, register as register
from ._resumable import ResumableIterator as ResumableIterator, map_batches as map_batches
from ._video_records import write_video_records as write_video_records
