"""Datasets: host-local numpy batches from TFDS/tf.data pipelines, padded with `batch_mask`.

Importing this package does not import TensorFlow; `get_dataset` does, when it builds a
pipeline.
"""

from ._arrays import from_arrays as from_arrays
from ._dataset import Dataset as Dataset
from ._padding import pad_batch as pad_batch
from ._registry import get_dataset as get_dataset, list_datasets as list_datasets
from ._video_records import write_video_records as write_video_records
