"""Co-training batches: one batch of every dataset at each step, grouped by dataset name.

PolyViT (Likhosherstov et al., "PolyViT: Co-training Vision Transformers on Images,
Videos and Audio", 2021) trains one model on several datasets, each with its own head
and loss. Here a co-training batch holds a batch of every dataset for the same step,
each entry of the usual batch keyed by dataset name:

    {"inputs": {"digits": [batch, 8, 8, 1], "mnist": [batch, 28, 28, 1]},
     "label": {"digits": [batch], "mnist": [batch]},
     "batch_mask": {"digits": [batch], "mnist": [batch]}}

so `loops.fit` and `loops.evaluate` run it like any batch, `nn.PerDatasetHeads` applies
each dataset's head to its own inputs, and `tasks.CoTrainingTask` weighs each dataset's
loss and reports its metrics under its name. Every dataset gives the same number of
examples per batch (the batch axis is shared; each host's share is split over its
devices as one batch).

This module imports neither TensorFlow nor JAX.
"""

import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ._resumable import ResumableIterator, begin_save, finish_save, read_state

Batch = dict[str, Any]
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _check_names(datasets: Any, argument: str) -> list[str]:
    """The dataset names of `datasets`, a `{name: ...}` mapping, after checking them."""
    if not isinstance(datasets, Mapping):
        raise TypeError(
            f"`{argument}` must be a dict `{{dataset_name: batches}}`. Received: {type(datasets).__name__}."
        )
    names = list(datasets)
    if not names:
        raise ValueError(f"`{argument}` must name at least one dataset. Received: an empty mapping.")
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"`{argument}`: dataset names must be letters, digits and underscores, starting "
                f"with a letter (they prefix the logged metrics). Received: {name!r}."
            )
    return names


def _batch_size(batch: Any, name: str, where: str) -> int:
    if not isinstance(batch, Mapping) or "inputs" not in batch:
        received = sorted(map(str, batch)) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(
            f"{where}: the batch of dataset {name!r} must be a dict with `inputs`. Received: {received}."
        )
    first = batch["inputs"]
    while isinstance(first, Mapping):  # dict inputs (several modalities)
        first = next(iter(first.values()))
    return int(np.shape(first)[0])


def group_by_dataset(batches: Mapping[str, Batch], *, where: str) -> Batch:
    """One co-training batch from one batch of each dataset.

    Arguments:
        batches: `{dataset_name: batch}`, every batch a dict with `inputs`, usually
            `label` and `batch_mask`, all with the same leading size.
        where: how an error names the batches, e.g. "step 3 of `train_iters`".

    Returns:
        `{key: {dataset_name: batch[key]}}` for every key of any batch; each dataset's
        `batch_mask` is present (all ones where a batch had none).

    Raises:
        ValueError: the batches differ in size; the message lists each dataset's size.
    """
    sizes = {name: _batch_size(batch, name, where) for name, batch in batches.items()}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{name!r}: {size}" for name, size in sizes.items())
        raise ValueError(
            f"{where}: every dataset must give batches of the same size (the batch axis is "
            f"shared: set the same batch size for each). Received: {listing}."
        )
    grouped: Batch = {}
    for name, batch in batches.items():
        batch = dict(batch)
        batch.setdefault("batch_mask", np.ones((sizes[name],), np.float32))
        for key, value in batch.items():
            grouped.setdefault(key, {})[name] = value
    return grouped


class CoTrainingBatches:
    """Training batches of several datasets, one of each per step (`co_training_batches`).

    This class does not save its position (`fit` replays it); the subclass that
    `co_training_batches` returns when every dataset's iterator saves its own does.
    """

    def __init__(self, train_iters: Mapping[str, Iterator[Batch]]):
        self._names = _check_names(train_iters, "train_iters")
        self._iters = {name: iter(train_iters[name]) for name in self._names}
        self._taken = 0

    def __iter__(self) -> "CoTrainingBatches":
        return self

    def __next__(self) -> Batch:
        batches = {}
        for name, batches_of_name in self._iters.items():
            try:
                batches[name] = next(batches_of_name)
            except StopIteration:
                raise ValueError(
                    f"`train_iters`: dataset {name!r} ran out at co-training batch {self._taken + 1}; "
                    "co-training draws a batch of every dataset at every step, so each training "
                    "iterator must be infinite (as every `Dataset.train_iter` is)."
                ) from None
        self._taken += 1
        return group_by_dataset(batches, where=f"Co-training batch {self._taken}")


class _ResumableCoTrainingBatches(CoTrainingBatches):
    """`CoTrainingBatches` whose datasets' iterators all save their positions."""

    def _spec(self) -> dict:
        return {"co_training_datasets": self._names}

    def save_state(self, directory: str) -> None:
        """Saves every dataset's position, each in `directory/<dataset name>`."""
        directory = begin_save(directory)
        for name, batches in self._iters.items():
            batches.save_state(os.path.join(directory, name))
        finish_save(directory, self._spec(), {"taken": self._taken})

    def restore_state(self, directory: str) -> None:
        """Moves every dataset to the position saved in `directory` (see `save_state`)."""
        position = read_state(directory, self._spec())
        for name, batches in self._iters.items():
            batches.restore_state(os.path.join(os.fspath(directory), name))
        self._taken = int(position["taken"])


def co_training_batches(train_iters: Mapping[str, Iterator[Batch]]) -> Iterator[Batch]:
    """An infinite iterator of co-training batches: one batch of every dataset per step.

    ```python
    train = data.co_training_batches({"digits": digits.train_iter, "mnist": mnist.train_iter})
    loops.fit(nn.PerDatasetHeads(vit, heads), tasks.CoTrainingTask(tasks, weights), train, ...)
    ```

    Arguments:
        train_iters: `{dataset_name: training iterator}`, e.g. each `Dataset.train_iter`;
            names are letters, digits and underscores (they prefix the logged metrics).
            Every iterator must be infinite and give batches of the same size.

    Returns:
        An iterator of `{key: {dataset_name: value}}` batches (see the module's
        docstring). When every dataset's iterator is a `ResumableIterator` (as every
        `Dataset.train_iter` is) so is this one: its state holds each dataset's
        position, so a resumed `fit` continues every dataset where it stood; otherwise a
        resumed `fit` replays it.
    """
    _check_names(train_iters, "train_iters")
    if all(isinstance(batches, ResumableIterator) for batches in train_iters.values()):
        return _ResumableCoTrainingBatches(train_iters)
    return CoTrainingBatches(train_iters)


class CoTrainingEvalBatches:
    """Evaluation passes over several datasets at once (`co_training_eval_batches`)."""

    def __init__(self, eval_batches: Mapping[str, Iterable[Batch] | Callable[[], Iterable[Batch]]]):
        self._names = _check_names(eval_batches, "eval_batches")
        self._sources = dict(eval_batches)

    def __iter__(self) -> Iterator[Batch]:
        iters = {
            name: iter(source() if callable(source) else source) for name, source in self._sources.items()
        }
        last: dict[str, Batch] = {}  # each dataset's latest real batch
        padding: dict[str, Batch] = {}  # each finished dataset's stand-in
        for index in itertools.count(1):
            batches = {}
            for name, batches_of_name in iters.items():
                if name in padding:
                    continue
                batch = next(batches_of_name, None)
                if batch is not None:
                    batches[name] = last[name] = batch
                elif name in last:
                    size = _batch_size(last[name], name, "`eval_batches`")
                    padding[name] = {"batch_mask": np.zeros((size,), np.float32), **_padding_like(last[name])}
                else:
                    raise ValueError(
                        f"`eval_batches`: dataset {name!r} gave no evaluation batch. Received: an "
                        "empty evaluation pass."
                    )
            if not batches:
                return
            batches.update(padding)
            grouped = {name: batches[name] for name in self._names}
            yield group_by_dataset(grouped, where=f"Co-training evaluation batch {index}")


def _padding_like(batch: Any) -> Any:
    """Zeros shaped like `batch` (nested dicts, lists and tuples of arrays): with its
    `batch_mask` zero too, a batch that counts in no metric."""
    if isinstance(batch, Mapping):
        return {key: _padding_like(value) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_padding_like(value) for value in batch)
    return np.zeros_like(np.asarray(batch))


def co_training_eval_batches(
    eval_batches: Mapping[str, Iterable[Batch] | Callable[[], Iterable[Batch]]],
) -> Iterable[Batch]:
    """A re-iterable of co-training evaluation batches: every dataset's whole pass, in step.

    The datasets' passes are read side by side; once a shorter one ends, its entries
    are padding (zeros shaped like its batches, `batch_mask` 0.0), which counts in no
    metric, until the longest ends. So `loops.evaluate` (and `fit`'s periodic
    evaluation) computes each dataset's metrics over exactly its own examples.

    Arguments:
        eval_batches: `{dataset_name: evaluation batches}`, each a re-iterable (as
            `Dataset.test_iter`) or a callable returning a fresh iterable; every batch
            of every dataset of the same size.

    Returns:
        A re-iterable: each `iter()` is one fresh pass over every dataset.
    """
    return CoTrainingEvalBatches(eval_batches)
