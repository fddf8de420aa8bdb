"""Training iterators that save their position and restore it without replaying batches.

A resumed run used to skip the batches consumed before its checkpoint one by one: at step
10,000 of ImageNet that is 10,000 batches decoded and augmented for nothing. An iterator
implementing `ResumableIterator` instead writes its position next to the checkpoint and
reads it back in a time that does not grow with the step. Every `Dataset.train_iter`
of `get_dataset` implements it (a tf.data pipeline by tf.data's own iterator
checkpointing, an in-memory one by its batch count), except a tf.data pipeline whose
source holds Python state (`tf.data.Dataset.from_generator`, as the random examples of
`tfds.testing.mock_data`), which cannot be saved: such a `train_iter` is a plain
iterator, and a trainer resumes it by replay.

This module imports neither TensorFlow nor JAX.
"""

import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

# The file that holds what a state is the state of; written last, so that its presence
# marks a complete save.
STATE_FILE = "input_state.json"
_FORMAT = 1


@runtime_checkable
class ResumableIterator(Protocol):
    """An iterator of training batches whose position can be saved and restored in O(1).

    **Position** is the number of batches the consumer has taken with `next()`. A
    pipeline may prepare batches ahead of the consumer (tf.data's `prefetch`, parallel
    maps, the shuffle buffer); those belong to the saved state, they are neither lost
    nor skipped. So if the state is saved after the consumer took batch N, then a fresh
    iterator of the same pipeline that restores it returns batch N+1 at its next
    `next()`, bitwise equal to batch N+1 of the uninterrupted iterator, and continues
    bitwise identically from there on.

    `save_state(directory)` writes the state into `directory` (created if missing; a
    state saved there before is replaced). It does not change what `next()` returns.
    Each host saves its own state (its own share of the data, its own shuffle buffer):
    give every process its own directory, e.g. `.../input_state/<step>/process_<i>`.
    Only one save per directory at a time.

    `restore_state(directory)` moves the iterator to the saved position, whatever it
    yielded before. It reads the state, without replaying: its cost depends on the
    state's size (the shuffle and prefetch buffers of a tf.data pipeline), not on how
    many batches were taken. It raises `FileNotFoundError` when `directory` holds no
    complete state, and `ValueError`, naming what differs, when the state was saved by
    another pipeline (another dataset, split, seed, batch size, host, shuffle buffer
    size, ...), so that a run is never resumed with silently different data.

    A wrapper that reads batches ahead of its consumer (as `loops.prefetch_to_mesh` does)
    must not pass the inner iterator's state off as its own: the state would be ahead
    of the batches the consumer has taken. `map_batches` is the one wrapper that keeps
    the state (no read-ahead).

    `isinstance(x, ResumableIterator)` tells whether `x` has `save_state` and
    `restore_state`; anything else resumes by replay.
    """

    def __iter__(self) -> Iterator[Any]: ...

    def __next__(self) -> Any: ...

    def save_state(self, directory: str) -> None:
        """Writes the position (after the batches taken so far) into `directory`."""
        ...

    def restore_state(self, directory: str) -> None:
        """Continues from the position saved in `directory`."""
        ...


def _state_path(directory: str | os.PathLike) -> str:
    return os.path.join(os.fspath(directory), STATE_FILE)


def begin_save(directory: str | os.PathLike) -> str:
    """Prepares `directory` for a new state: creates it, removes a previous state's marker.

    The marker goes first so that a save interrupted half-way is not taken for a
    complete one. Returns `directory` as a string.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(_state_path(directory)):
        os.remove(_state_path(directory))
    return directory


def finish_save(directory: str, spec: Mapping[str, Any], position: Mapping[str, Any]) -> None:
    """Writes the marker of a complete state: the pipeline's `spec` and its `position`.

    Arguments:
        directory: the directory passed to `begin_save`.
        spec: JSON values that identify the pipeline (dataset, batch size, seed, ...);
            `read_state` refuses a state whose spec differs from the restorer's.
        position: JSON values of the position (empty when the position lives in other
            files, as tf.data's checkpoint).
    """
    path = _state_path(directory)
    content = {"format": _FORMAT, "spec": dict(spec), "position": dict(position)}
    # Written aside, then renamed: a reader sees the whole file or none.
    with open(path + ".tmp", "w") as f:
        json.dump(content, f, indent=1, sort_keys=True, default=str)
    os.replace(path + ".tmp", path)


def _jsonable(spec: Mapping[str, Any]) -> dict:
    # A tuple saved to JSON reads back as a list: compare what JSON keeps.
    return json.loads(json.dumps(dict(spec), sort_keys=True, default=str))


def read_state(directory: str | os.PathLike, spec: Mapping[str, Any]) -> dict:
    """Reads the position saved in `directory`, after checking it is this pipeline's.

    Arguments:
        directory: a directory written by `begin_save`...`finish_save`.
        spec: the restoring pipeline's spec, as given to `finish_save`.

    Returns:
        The saved `position`.

    Raises:
        FileNotFoundError: `directory` holds no complete state.
        ValueError: the state is another pipeline's; the message lists what differs.
    """
    path = _state_path(directory)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"`directory` (={os.fspath(directory)!r}) holds no saved input position: "
            f"{STATE_FILE} is missing (never saved there, or the save was interrupted). "
            f"Received: {os.fspath(directory)!r}."
        )
    with open(path) as f:
        content = json.load(f)
    saved, expected = content.get("spec", {}), _jsonable(spec)
    if content.get("format") != _FORMAT or saved != expected:
        keys = sorted(set(saved) | set(expected))
        missing = "(none)"
        diffs = [
            f"{key}: saved {saved.get(key, missing)!r}, this pipeline {expected.get(key, missing)!r}"
            for key in keys
            if saved.get(key) != expected.get(key)
        ]
        if content.get("format") != _FORMAT:
            diffs.insert(0, f"format: saved {content.get('format')!r}, expected {_FORMAT}")
        raise ValueError(
            f"`directory` (={os.fspath(directory)!r}) holds the input position of another "
            f"pipeline; restoring it would resume with different data. Differences: "
            f"{'; '.join(diffs)}. Received: the state saved in {path!r}."
        )
    return content["position"]


class _MappedBatches:
    """`map(fn, batches)` whose position is that of `batches` (see `map_batches`)."""

    def __init__(self, fn: Callable[[Any], Any], batches: ResumableIterator):
        self._fn, self._batches = fn, batches

    def __iter__(self) -> "_MappedBatches":
        return self

    def __next__(self) -> Any:
        return self._fn(next(self._batches))

    def save_state(self, directory: str) -> None:
        self._batches.save_state(directory)

    def restore_state(self, directory: str) -> None:
        self._batches.restore_state(directory)


def map_batches(fn: Callable[[Any], Any], batches: Iterator[Any]) -> Iterator[Any]:
    """`map(fn, batches)`, resumable when `batches` is a `ResumableIterator`.

    Arguments:
        fn: a function of one batch alone (no random state of its own: a resumed run
            would not draw what the uninterrupted one drew).
        batches: an iterator of batches, e.g. a `Dataset.train_iter`.

    Returns:
        An iterator of `fn(batch)`; its saved position is `batches`' position, so it
        resumes exactly when `batches` does.
    """
    if isinstance(batches, ResumableIterator):
        return _MappedBatches(fn, batches)
    return map(fn, batches)
