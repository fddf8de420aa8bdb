"""`arrays`: a `Dataset` from numpy arrays held in memory, or from an `.npz` file.

`from_arrays((x_train, y_train), (x_test, y_test), batch_size=...)` and
`get_dataset("arrays", train=..., test=..., batch_size=...)` are the same call; a config
file names the arrays by an `.npz` path instead: `get_dataset("arrays", npz=PATH)`.
Labels may be class indices, float targets, dense maps or a dict of these (see
`_array_labels.py`). Batches come from plain numpy (`_in_memory`): no TensorFlow.
"""

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ._array_labels import batch_labels, check_labels, label_shape, label_structure, num_classes_of
from ._dataset import Batch, Dataset
from ._holdout import check_valid_fraction, held_out_arrays
from ._in_memory import EvalBatches, train_batches
from ._meta_data import MetaData
from ._resumable import map_batches

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Optional in an `.npz` file: an explicit validation split.
NPZ_VALID_KEYS = ("x_valid", "y_valid")


def from_arrays(
    train: Any,
    test: Any,
    *,
    batch_size: int,
    eval_batch_size: int | None = None,
    valid: Any = None,
    valid_fraction: float | None = None,
    **kwargs: Any,
) -> Dataset:
    """A `Dataset` of in-memory `(inputs, labels)` arrays: `get_dataset("arrays", ...)`.

    Arguments:
        train: `(inputs, labels)`. Inputs `[n, ...]` (e.g. `[n, height, width,
            channels]`), uint8 (scaled to [0, 1]) or floating (kept as they are).
            Labels, one entry per example: integer class indices `[n]`, float targets
            `[n]` or `[n, d]` (regression), dense maps (`[n, height, width]` integer
            classes, `[n, height, width, channels]` floats), or a dict of such arrays
            (`{"class": int [n], "box": float [n, 4]}`), which batches keep as a dict.
        test: the held-out `(inputs, labels)`, the same way.
        batch_size: training examples per batch on this host.
        eval_batch_size: evaluation examples per batch on this host; defaults to
            `batch_size`.
        valid: an explicit validation split `(inputs, labels)`, the same way.
        valid_fraction: a float in (0, 1): the last `round(valid_fraction * n)` training
            examples (a fixed tail, in the order given: shuffle arrays sorted by class
            first) are held out from training as the validation split. Without `valid`
            or `valid_fraction`, `valid_iter` passes over `test`.
        **kwargs: `num_classes`, `shuffle_seed`, `process_index`, `process_count`, as
            in `get_dataset`. `num_classes` is recorded only for integer labels: for
            class indices `[n]` it defaults to the largest label plus one; for dense
            maps or a dict only a given value is recorded; float labels take none.

    Returns:
        A `Dataset`: shuffled, repeated training batches of this host's share (each
        epoch a new order, a function of `shuffle_seed`), and padded evaluation passes
        with `batch_mask`; `meta_data` as for any dataset, plus `label_shape` (the
        per-example label shape, a dict for dict labels); `valid_source` says which
        data `valid_iter` reads (`"test"`, `"valid"` or `"train[k:]"`).
    """
    from ._registry import get_dataset

    if valid is not None:
        kwargs = {**kwargs, "valid": valid}
    return get_dataset(
        "arrays",
        train=train,
        test=test,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        valid_fraction=valid_fraction,
        **kwargs,
    )


def _pickle_refused(path: str, what: str, error: Exception) -> str:
    return (
        f"`npz` (={path!r}) is refused: {what}, and unpickling can run arbitrary code "
        "from the file. Save plain numeric arrays with `np.savez` (e.g. uint8 images, "
        f"int labels). Received: {path!r} (numpy: {error})."
    )


def _load_npz(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{"train": (x, y), "test": (x, y)}`, and `"valid"` when the file holds one."""
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
        present_valid = [key for key in NPZ_VALID_KEYS if key in arrays.files]
        if len(present_valid) == 1:
            raise ValueError(
                f"`npz` (={path!r}) holds {present_valid[0]} alone; a validation split needs "
                f"both {' and '.join(NPZ_VALID_KEYS)}. Received: {', '.join(arrays.files)}."
            )
        loaded = {}
        for key in NPZ_KEYS + tuple(present_valid):
            try:
                loaded[key] = arrays[key]
            except ValueError as error:  # numpy's refusal of an object array
                what = f"`{key}` is an object array, i.e. a Python pickle"
                raise ValueError(_pickle_refused(path, what, error)) from None
    splits = {"train": "train", "test": "test"} | ({"valid": "valid"} if present_valid else {})
    return {name: (loaded[f"x_{key}"], loaded[f"y_{key}"]) for name, key in splits.items()}


def _check_split(name: str, split: Any) -> tuple[np.ndarray, Any]:
    if not isinstance(split, (tuple, list)) or len(split) != 2:
        raise ValueError(f"`{name}` must be a pair `(inputs, labels)`. Received: {type(split).__name__}.")
    inputs = np.asarray(split[0])
    if inputs.ndim < 1 or not len(inputs):
        raise ValueError(
            f"`{name}` inputs must be an array `[n, ...]` with n > 0. Received: shape {inputs.shape}."
        )
    if inputs.dtype != np.uint8 and not np.issubdtype(inputs.dtype, np.floating):
        raise ValueError(f"`{name}` inputs must be uint8 or floating. Received: dtype {inputs.dtype}.")
    return inputs, check_labels(name, split[1], len(inputs))


def _to_float(batch: Batch) -> Batch:
    inputs = batch["inputs"]
    scale = 1 / 255 if inputs.dtype == np.uint8 else 1.0
    return {
        "inputs": inputs.astype(np.float32) * np.float32(scale),
        "label": batch_labels(batch["label"]),
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


def _given_splits(train: Any, test: Any, valid: Any, npz: Any) -> dict[str, Any]:
    if npz is not None:
        if train is not None or test is not None or valid is not None:
            raise ValueError(f"Give either `npz` (={npz!r}) or `train` and `test`, not both.")
        return _load_npz(npz)
    if train is None or test is None:
        raise ValueError(
            "`get_dataset('arrays', ...)` needs `train` and `test` (each `(inputs, labels)`) "
            f"or `npz`; got train={'set' if train is not None else None}, "
            f"test={'set' if test is not None else None}."
        )
    return {"train": train, "test": test} | ({"valid": valid} if valid is not None else {})


def _check_alike(splits: dict[str, tuple[np.ndarray, Any]]) -> None:
    """Every split's examples and labels must be shaped as the training split's."""
    x_train, y_train = splits["train"]
    for name, (inputs, labels) in splits.items():
        if inputs.shape[1:] != x_train.shape[1:]:
            raise ValueError(
                f"`train` and `{name}` inputs must share their example shape; got "
                f"{x_train.shape[1:]} and {inputs.shape[1:]}."
            )
        if label_structure(labels) != label_structure(y_train):
            raise ValueError(
                f"`{name}` labels must have the per-example shapes and kinds (integer, "
                f"floating, bool) of the `train` labels, {label_structure(y_train)}. "
                f"Received: {label_structure(labels)}."
            )


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
    valid: Any = None,
    valid_fraction: float | None = None,
) -> Dataset:
    """The `arrays` entry of `get_dataset`: see `from_arrays`. `npz` is a file holding
    `x_train`, `y_train`, `x_test` and `y_test` (and optionally `x_valid` and `y_valid`),
    given instead of `train` and `test` (and `valid`)."""
    valid_fraction = check_valid_fraction(valid_fraction)
    given = _given_splits(train, test, valid, npz)
    if valid_fraction is not None and "valid" in given:
        raise ValueError(
            "Give either a validation split (`valid`, or `x_valid` in `npz`) or "
            f"`valid_fraction` (={valid_fraction!r}), not both."
        )
    splits = {name: _check_split(name, split) for name, split in given.items()}
    _check_alike(splits)
    valid_source = "valid" if "valid" in splits else "test"
    if valid_fraction is not None:
        x_train, y_train = splits["train"]
        kept, held, valid_source = held_out_arrays({"inputs": x_train, "label": y_train}, valid_fraction)
        splits["train"] = (kept["inputs"], kept["label"])
        splits["valid"] = (held["inputs"], held["label"])
    num_classes = num_classes_of({name: labels for name, (_, labels) in splits.items()}, num_classes)
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
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

    def eval_batches(inputs: np.ndarray, labels: Any) -> _Mapped:
        arrays = {"inputs": inputs, "label": labels}
        return _Mapped(_to_float, EvalBatches(arrays, batch_size=eval_batch_size, **hosts))

    test_iter = eval_batches(x_test, y_test)
    valid_iter = eval_batches(*splits["valid"]) if "valid" in splits else test_iter
    meta_data = MetaData(
        num_classes=num_classes,
        input_shape=(-1, *x_train.shape[1:]),
        input_dtype=np.float32,
        label_shape=label_shape(y_train),
        num_train_examples=len(x_train),
        num_eval_examples=len(splits.get("valid", splits["test"])[0]),
        target_is_onehot=False,
        dataset_name="arrays",
        valid_source=valid_source,
    )
    return Dataset(train_iter, valid_iter, test_iter, meta_data)
