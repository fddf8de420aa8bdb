"""Task objects: a loss and `(value_sum, normalizer)` metrics, weighted by `batch_mask`."""

from ._classification import ClassificationTask as ClassificationTask
from ._multilabel import MultiLabelClassificationTask as MultiLabelClassificationTask
from ._task import AbstractTask as AbstractTask
