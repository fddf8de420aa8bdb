"""The labels of `from_arrays`: class indices, float targets, dense maps, or a dict of them.

A label is one array with one entry per example, or a (nested) dict of such arrays for
multi-task data, e.g. `{"class": int [n], "box": float [n, 4]}`:

| labels | per example | e.g. | batch `label` |
|---|---|---|---|
| integer `[n]` | a class index | classification | int32 `[batch]` |
| integer `[n, ...]` | a class map | segmentation `[n, height, width]` | int32 `[batch, ...]` |
| floating `[n]` or `[n, ...]` | a target | regression `[n, d]`, dense maps `[n, h, w, c]` | float32 `[batch, ...]` |
| bool `[n, ...]` | a flag | a per-box mask | bool `[batch, ...]` |
| a dict of the above | one of each | `{"class": ..., "box": ...}` | a dict of arrays |

This module imports neither TensorFlow nor JAX.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._checks import check_positive_int

# An array, or a dict (of dicts) of arrays, each with the examples along axis 0.
Labels = Any


def _name(where: str, path: tuple) -> str:
    return f"`{where}` labels" + "".join(f"[{key!r}]" for key in path)


def check_labels(where: str, labels: object, num_examples: int, path: tuple = ()) -> Labels:
    """`labels` as numpy arrays, each checked to hold one entry per example.

    Arguments:
        where: the argument the labels came in (`"train"`, `"test"`, ...), for messages.
        labels: an array-like `[n, ...]`, or a dict (with string keys) of such labels.
        num_examples: `n`, the number of inputs.
        path: the keys leading to `labels` inside the argument (for messages).

    Returns:
        The same structure, of numpy arrays.
    """
    if isinstance(labels, Mapping):
        if not labels or not all(isinstance(key, str) for key in labels):
            raise ValueError(
                f"{_name(where, path)} must be an array or a non-empty dict with string keys. "
                f"Received: a dict with keys {list(labels)!r}."
            )
        return {key: check_labels(where, value, num_examples, (*path, key)) for key, value in labels.items()}
    array = np.asarray(labels)
    if array.ndim < 1 or len(array) != num_examples:
        raise ValueError(
            f"{_name(where, path)} must have one entry per example: a leading size of "
            f"{num_examples} (the number of `{where}` inputs). Received: shape {array.shape}."
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.issubdtype(
        array.dtype, np.complexfloating
    ):
        raise ValueError(
            f"{_name(where, path)} must be integer (classes), floating (targets) or bool. "
            f"Received: dtype {array.dtype}."
        )
    return array


def _kind(dtype: np.dtype) -> str:
    if dtype.kind == "b":
        return "bool"
    return "integer" if np.issubdtype(dtype, np.integer) else "floating"


def label_structure(labels: Labels) -> Any:
    """Per-example shape and kind of every label array: what every split must share."""
    if isinstance(labels, Mapping):
        return {key: label_structure(value) for key, value in labels.items()}
    return (labels.shape[1:], _kind(labels.dtype))


def label_shape(labels: Labels) -> Any:
    """The per-example shape of `labels` (`()` for one class or value), a dict for a dict."""
    if isinstance(labels, Mapping):
        return {key: label_shape(value) for key, value in labels.items()}
    return tuple(labels.shape[1:])


def batch_labels(labels: Labels) -> Labels:
    """Labels as a batch holds them: integers as int32, floats as float32, bools kept."""
    if isinstance(labels, Mapping):
        return {key: batch_labels(value) for key, value in labels.items()}
    if labels.dtype == bool:
        return labels
    return labels.astype(np.int32 if np.issubdtype(labels.dtype, np.integer) else np.float32)


def _leaves(labels: Labels, path: tuple = ()) -> list[tuple[tuple, np.ndarray]]:
    if isinstance(labels, Mapping):
        return [leaf for key, value in labels.items() for leaf in _leaves(value, (*path, key))]
    return [(path, labels)]


def num_classes_of(splits: dict[str, Labels], num_classes: object) -> int | None:
    """The `num_classes` of the meta data: given, inferred, or None where it means nothing.

    - Integer labels `[n]` (one class per example): `num_classes` if given, else the
      largest label of all splits plus one; every label must lie in `[0, num_classes)`.
    - Dense integer maps `[n, ...]`, or a dict of labels: only a given `num_classes` is
      recorded (a map may hold an ignore value such as 255, which a task handles). The
      integer leaves of one value per example (`[n]`) must then lie in its range.
    - Labels without integers (float targets, bool flags): None; giving `num_classes`
      is an error.

    Arguments:
        splits: the labels of each split, by the argument they came in.
        num_classes: the value received, or None.

    Returns:
        The number of classes, or None (then the meta data has no `num_classes`).
    """
    leaves = {name: _leaves(labels) for name, labels in splits.items()}
    integer = [
        (name, path, array)
        for name, pairs in leaves.items()
        for path, array in pairs
        if _kind(array.dtype) == "integer"
    ]
    if num_classes is not None:
        num_classes = check_positive_int("num_classes", num_classes)
        if not integer:
            raise ValueError(
                f"`num_classes` (={num_classes}) applies to integer class labels; these "
                "labels hold none (float targets or bool flags), so leave it out. "
                f"Received: num_classes={num_classes}."
            )
    first = next(iter(splits.values()))
    one_class_each = not isinstance(first, Mapping) and first.ndim == 1 and bool(integer)
    if num_classes is None and not one_class_each:
        return None
    checked = [(name, path, array) for name, path, array in integer if array.ndim == 1]
    if num_classes is None:
        num_classes = int(max(array.max() for _, _, array in checked)) + 1
    for name, path, array in checked:
        smallest, largest = int(array.min()), int(array.max())
        if smallest < 0 or largest >= num_classes:
            raise ValueError(
                f"{_name(name, path)} must lie in [0, `num_classes` (={num_classes})). "
                f"Received: labels from {smallest} to {largest}."
            )
    return num_classes
