"""Tasks by name, for configs: `create_task("classification", label_smoothing=0.1)`."""

import dataclasses
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
    """Builds the registered task `name` with its constructor's keyword arguments.

    Arguments:
        name: a name from `list_tasks()`.
        **kwargs: the task's constructor arguments.

    Returns:
        The task.

    Raises:
        ValueError: an unknown name or argument; the message lists the valid ones.
    """
    if not isinstance(name, str) or name not in _TASKS:
        close = difflib.get_close_matches(str(name), _TASKS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"`name` must be a registered task: {', '.join(list_tasks())}.{hint} "
            f"Received: {name!r}."
        )
    task_type = _TASKS[name]
    accepted = [f.name for f in dataclasses.fields(task_type) if f.init]
    unknown = [argument for argument in kwargs if argument not in accepted]
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Task {name!r} takes the arguments: {', '.join(accepted) or '(none)'}.{hint} "
            f"Received: unknown argument(s) {', '.join(map(repr, unknown))}."
        )
    return task_type(**kwargs)
