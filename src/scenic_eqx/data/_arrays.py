"""`arrays`: a `Dataset` from numpy arrays held in memory, or from an `.npz` file.

`from_arrays((x_train, y_train), (x_test, y_test), batch_size=...)` and
`get_dataset("arrays", train=..., test=..., batch_size=...)` are the same call; a config
file names the arrays by an `.npz` path instead: `get_dataset("arrays", npz=PATH)`.
Batches come from plain numpy (`_in_memory`): no TensorFlow.
"""

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ._checks import check_positive_int
from ._dataset import Batch, Dataset
from ._in_memory import EvalBatches, train_batches
from ._resumable import map_batches

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def from_arrays(
    train: Any,
    test: Any,
    *,
    batch_size: int,
    eval_batch_size: int | None = None,
    **kwargs: Any,
) -> Dataset:
    """A `Dataset` of in-memory `(images, labels)` arrays: `get_dataset("arrays", ...)`.

    Arguments:
        train: `(inputs, labels)`: inputs `[n, ...]` (e.g. `[n, height, width,
            channels]`), uint8 (scaled to [0, 1]) or floating (kept as they are), and
            integer labels `[n]` in `[0, num_classes)`.
        test: the held-out `(inputs, labels)`, the same way; `valid_iter` and
            `test_iter` both pass over it.
        batch_size: training examples per batch on this host.
        eval_batch_size: evaluation examples per batch on this host; defaults to
            `batch_size`.
        **kwargs: `num_classes` (default: the largest label plus one),
            `shuffle_seed`, `process_index`, `process_count`, as in `get_dataset`.

    Returns:
        A `Dataset`: shuffled, repeated training batches of this host's share (each
        epoch a new order, a function of `shuffle_seed`), and padded evaluation passes
        with `batch_mask`; `meta_data` as for any dataset.
    """
    from ._registry import get_dataset

    return get_dataset(
        "arrays",
        train=train,
        test=test,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        **kwargs,
    )


def _pickle_refused(path: str, what: str, error: Exception) -> str:
    return (
        f"`npz` (={path!r}) is refused: {what}, and unpickling can run arbitrary code "
        "from the file. Save plain numeric arrays with `np.savez` (e.g. uint8 images, "
        f"int labels). Received: {path!r} (numpy: {error})."
    )


def _load_npz(path: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`npz` (={path!r}) is not a file. Received: {path!r}.")
    # `allow_pickle=False`: an object array is a pickle, and unpickling runs whatever
    # code the file's author chose. Loading data must execute nothing from the file.
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as error:  # numpy's refusal of a whole-file pickle
        raise ValueError(_pickle_refused(path, "it holds pickled Python objects", error)) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"`npz` (={path!r}) must be an .npz archive (`np.savez`) of {', '.join(NPZ_KEYS)}. "
            f"Received: a file holding one {type(archive).__name__}."
        )
    with archive as arrays:
        missing = [key for key in NPZ_KEYS if key not in arrays.files]
        if missing:
            raise ValueError(
                f"`npz` (={path!r}) has no array(s) {', '.join(missing)}; it must hold "
                f"{', '.join(NPZ_KEYS)} (it holds {', '.join(arrays.files) or 'nothing'})."
            )
        loaded = []
        for key in NPZ_KEYS:
            try:
                loaded.append(arrays[key])
            except ValueError as error:  # numpy's refusal of an object array
                what = f"`{key}` is an object array, i.e. a Python pickle"
                raise ValueError(_pickle_refused(path, what, error)) from None
    x_train, y_train, x_test, y_test = loaded
    return (x_train, y_train), (x_test, y_test)


def _check_split(name: str, split: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(split, (tuple, list)) or len(split) != 2:
        raise ValueError(f"`{name}` must be a pair `(inputs, labels)`; got {type(split).__name__}.")
    inputs, labels = np.asarray(split[0]), np.asarray(split[1])
    if inputs.ndim < 1 or labels.ndim != 1 or len(inputs) != len(labels) or not len(labels):
        raise ValueError(
            f"`{name}` must be `(inputs [n, ...], labels [n])` with n > 0; got shapes "
            f"{inputs.shape} and {labels.shape}."
        )
    if inputs.dtype != np.uint8 and not np.issubdtype(inputs.dtype, np.floating):
        raise ValueError(f"`{name}` inputs must be uint8 or floating; got {inputs.dtype}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`{name}` labels must be integer class indices; got {labels.dtype}.")
    return inputs, labels


def _to_float(batch: Batch) -> Batch:
    inputs = batch["inputs"]
    scale = 1 / 255 if inputs.dtype == np.uint8 else 1.0
    return {
        "inputs": inputs.astype(np.float32) * np.float32(scale),
        "label": batch["label"].astype(np.int32),
        "batch_mask": batch["batch_mask"],
    }


class _Mapped:
    """`map(fn, batches)` that stays re-iterable and keeps `len()`, for eval passes."""

    def __init__(self, fn: Callable[[Batch], Batch], batches: Iterable[Batch]):
        self._fn, self._batches = fn, batches

    def __iter__(self) -> Iterator[Batch]:
        return map(self._fn, self._batches)

    def __len__(self) -> int:
        return len(self._batches)


def arrays_dataset(
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int,
    process_index: int,
    process_count: int,
    train: Any = None,
    test: Any = None,
    npz: str | os.PathLike | None = None,
    num_classes: int | None = None,
) -> Dataset:
    """The `arrays` entry of `get_dataset`: see `from_arrays`; `npz` is a file holding
    `x_train`, `y_train`, `x_test` and `y_test`, given instead of `train` and `test`."""
    if npz is not None:
        if train is not None or test is not None:
            raise ValueError(f"Give either `npz` (={npz!r}) or `train` and `test`, not both.")
        train, test = _load_npz(npz)
    elif train is None or test is None:
        raise ValueError(
            "`get_dataset('arrays', ...)` needs `train` and `test` (each `(inputs, labels)`) "
            f"or `npz`; got train={'set' if train is not None else None}, "
            f"test={'set' if test is not None else None}."
        )
    (x_train, y_train), (x_test, y_test) = _check_split("train", train), _check_split("test", test)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"`train` and `test` inputs must share their example shape; got "
            f"{x_train.shape[1:]} and {x_test.shape[1:]}."
        )
    largest = int(max(y_train.max(), y_test.max()))
    num_classes = largest + 1 if num_classes is None else check_positive_int("num_classes", num_classes)
    smallest = int(min(y_train.min(), y_test.min()))
    if smallest < 0 or largest >= num_classes:
        raise ValueError(
            f"Labels must lie in [0, `num_classes` (={num_classes})); got labels from "
            f"{smallest} to {largest}."
        )
    hosts = {"process_index": process_index, "process_count": process_count}
    train_iter = map_batches(
        _to_float,
        train_batches(
            {"inputs": x_train, "label": y_train},
            batch_size=batch_size,
            shuffle_seed=shuffle_seed,
            state_spec={"dataset": "arrays", "input_shape": list(x_train.shape)},
            **hosts,
        ),
    )
    test_iter = _Mapped(
        _to_float, EvalBatches({"inputs": x_test, "label": y_test}, batch_size=eval_batch_size, **hosts)
    )
    meta_data = {
        "num_classes": num_classes,
        "input_shape": (-1, *x_train.shape[1:]),
        "input_dtype": np.float32,
        "num_train_examples": len(y_train),
        "num_eval_examples": len(y_test),
        "target_is_onehot": False,
        "dataset_name": "arrays",
    }
    return Dataset(train_iter, test_iter, test_iter, meta_data)
