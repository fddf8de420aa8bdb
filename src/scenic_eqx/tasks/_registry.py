"""Tasks by name, for configs: `create_task("classification", label_smoothing=0.1)`; `register` adds one."""

import dataclasses
import difflib
import inspect
from typing import Any

from ._classification import ClassificationTask
from ._contrastive import ContrastiveTask
from ._detection import DetectionTask
from ._encoder_decoder import EncoderDecoderTask
from ._multilabel import MultiLabelClassificationTask
from ._regression import RegressionTask
from ._segmentation import SegmentationTask
from ._task import AbstractTask

_TASKS: dict[str, type[AbstractTask]] = {
    "classification": ClassificationTask,
    "contrastive": ContrastiveTask,
    "detection": DetectionTask,
    "encoder_decoder": EncoderDecoderTask,
    "multilabel_classification": MultiLabelClassificationTask,
    "regression": RegressionTask,
    "segmentation": SegmentationTask,
}


def list_tasks() -> list[str]:
    """The registered task names, sorted."""
    return sorted(_TASKS)


def register(name: str, cls: type[AbstractTask] | None = None, /, *, overwrite: bool = False):
    """Registers a task class under `name`, so that configs and `create_task` find it.

    As a decorator, `@tasks.register("my_task")` on the class; as a call,
    `tasks.register("my_task", MyTask)`.

    Arguments:
        name: the task's name in `list_tasks()`.
        cls: a concrete subclass of `AbstractTask` (its `loss` and `metrics`
            implemented); `create_task` passes its keyword arguments to the
            constructor. Omitted when used as a decorator.
        overwrite: replace an entry already registered under `name` (else an error).

    Returns:
        `cls` (or, as a decorator, a function registering and returning it).

    Raises:
        ValueError: `name` is not a non-empty string or is taken, or `cls` is not a
            concrete `AbstractTask` subclass.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string. Received: {name!r}.")
    if name in _TASKS and not overwrite:
        raise ValueError(
            f"A task is already registered as {name!r} ({_TASKS[name].__name__}); pass "
            f"`overwrite=True` to replace it. Received: name={name!r}."
        )

    def add(cls: type[AbstractTask]) -> type[AbstractTask]:
        if not (isinstance(cls, type) and issubclass(cls, AbstractTask)):
            raise ValueError(
                f"`cls` of task {name!r} must be a subclass of `tasks.AbstractTask`. Received: "
                f"{cls!r} of type {type(cls).__name__}."
            )
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise ValueError(
                f"`cls` of task {name!r} must implement every abstract method of `AbstractTask`. "
                f"Received: {cls.__name__}, which does not implement {missing}."
            )
        _TASKS[name] = cls
        return cls

    return add if cls is None else add(cls)


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
            f"`name` must be a registered task: {', '.join(list_tasks())}.{hint} Received: {name!r}."
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
