"""Task objects: a loss and `(value_sum, normalizer)` metrics, weighted by `batch_mask`."""

from ._task import AbstractTask as AbstractTask
