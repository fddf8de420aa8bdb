"""Task objects: a loss and `(value_sum, normalizer)` metrics, weighted by `batch_mask`."""

from ._classification import ClassificationTask as ClassificationTask
from ._encoder_decoder import EncoderDecoderTask as EncoderDecoderTask
from ._multilabel import MultiLabelClassificationTask as MultiLabelClassificationTask
from ._registry import create_task as create_task, list_tasks as list_tasks
from ._segmentation import SegmentationTask as SegmentationTask
from ._task import AbstractTask as AbstractTask
