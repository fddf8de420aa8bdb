"""Tasks by name, for configs: `create_task("classification", label_smoothing=0.1)`."""

import difflib
from typing import Any

from ._classification import ClassificationTask
from ._detection import DetectionTask
from ._encoder_decoder import EncoderDecoderTask
from ._multilabel import MultiLabelClassificationTask
from ._segmentation import SegmentationTask
from ._task import AbstractTask

_TASKS: dict[str, type[AbstractTask]] = {
    "classification": ClassificationTask,
    "detection": DetectionTask,
    "encoder_decoder": EncoderDecoderTask,
    "multilabel_classification": MultiLabelClassificationTask,
    "segmentation": SegmentationTask,
}


def list_tasks() -> list[str]:
    """The registered task names, sorted."""
    return sorted(_TASKS)


def create_task(name: str, **kwargs: Any) -> AbstractTask:
    """Builds the registered task `name` with its constructor's keyword arguments."""
    if name not in _TASKS:
        close = difflib.get_close_matches(name, _TASKS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown task `name` (={name!r}).{hint} Known tasks: {', '.join(list_tasks())}."
        )
    return _TASKS[name](**kwargs)
