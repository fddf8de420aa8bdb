"""Host-local batches of arrays held in memory: shuffled training, padded evaluation.

For datasets generated on the fly (synthetic ones): plain numpy, no TensorFlow, with the
same contract as the TFDS pipelines of `_pipeline.py`.
"""

from collections.abc import Iterator, Mapping

import numpy as np

from ._checks import check_positive_int, check_process
from ._dataset import Batch
from ._padding import pad_batch
from ._resumable import begin_save, finish_save, read_state


def take(arrays, rows):
    """`array[rows]` of an array, or of every array in a dict of (nested dicts of) arrays."""
    if not isinstance(arrays, Mapping):
        return arrays[rows]
    return {key: take(value, rows) for key, value in arrays.items()}


def num_examples(arrays: Mapping) -> int:
    """The leading size shared by every array of a dict of (nested dicts of) arrays."""
    sizes = {
        key: num_examples(value) if isinstance(value, Mapping) else len(value)
        for key, value in arrays.items()
    }
    if not arrays or len(set(sizes.values())) != 1:
        raise ValueError(
            f"`arrays` must be a non-empty dict of arrays sharing their leading size; got {sizes}."
        )
    return next(iter(sizes.values()))


def _permutation(shuffle_seed: int, epoch: int, size: int) -> np.ndarray:
    """The order of epoch `epoch`: a function of `(shuffle_seed, epoch)` only."""
    return np.random.default_rng([shuffle_seed, epoch]).permutation(size)


class TrainBatches:
    """Batches of `arrays` in a new seeded order each epoch; a `ResumableIterator`.

    The batches cut the endless sequence `permutation(epoch 0) + permutation(epoch 1) +
    ...` into consecutive runs of `batch_size` (a batch may span an epoch's end), so
    batch `n` starts at element `n * batch_size`: the position is `n`, restored in O(1)
    (one permutation drawn, whatever `n`).

    Arguments:
        arrays: this host's share: examples along axis 0, as in `train_batches`.
        batch_size: examples per batch.
        shuffle_seed: seed of the order.
        spec: JSON values that identify the data (dataset, hosts, ...) in the saved
            state; the batch size, seed and example count are added.
    """

    def __init__(self, arrays: dict, *, batch_size: int, shuffle_seed: int, spec: Mapping):
        self._arrays, self._batch_size, self._shuffle_seed = arrays, batch_size, shuffle_seed
        self._size = num_examples(arrays)
        self._mask = np.ones((batch_size,), np.float32)
        self._taken = 0
        self._orders: dict[int, np.ndarray] = {}
        self._spec = {
            "pipeline": "in_memory",
            "batch_size": batch_size,
            "shuffle_seed": shuffle_seed,
            "num_examples": self._size,
            **spec,
        }

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            # Keep the current epoch's order only: at most one draw per epoch.
            self._orders = {epoch: _permutation(self._shuffle_seed, epoch, self._size)}
        return self._orders[epoch]

    def __iter__(self) -> "TrainBatches":
        return self

    def __next__(self) -> Batch:
        start = self._taken * self._batch_size
        epochs, offsets = np.divmod(np.arange(start, start + self._batch_size), self._size)
        indices = np.concatenate(
            [self._order(int(epoch))[offsets[epochs == epoch]] for epoch in np.unique(epochs)]
        )
        self._taken += 1
        return {**take(self._arrays, indices), "batch_mask": self._mask}

    def save_state(self, directory: str) -> None:
        """Writes the number of batches taken into `directory` (see `ResumableIterator`)."""
        directory = begin_save(directory)
        finish_save(directory, self._spec, {"batches_taken": self._taken})

    def restore_state(self, directory: str) -> None:
        """Continues after the batches taken when `directory` was saved."""
        position = read_state(directory, self._spec)
        self._taken = int(position["batches_taken"])


def train_batches(
    arrays: dict[str, np.ndarray],
    *,
    batch_size: int,
    shuffle_seed: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    state_spec: dict | None = None,
) -> TrainBatches:
    """An infinite iterator of shuffled batches of this host's share of `arrays`.

    Hosts take disjoint contiguous equal shares, the remainder dropped (as
    `tfds.even_splits(..., drop_remainder=True)`). Each epoch visits the share in a new
    order, a function of `(shuffle_seed, epoch)` only; batches run across epoch ends.

    Arguments:
        arrays: examples along axis 0 (`inputs`, `label`, ...); a value may be a dict
            of arrays (a label pytree such as detection boxes and classes).
        batch_size: examples per batch on this host.
        shuffle_seed: seed of the order; the same seed gives the same batches.
        process_index: this host's index.
        process_count: the number of hosts.
        state_spec: JSON values that identify the data (dataset name, its seed, ...)
            in the saved position, so that a position is never restored into batches
            of other data.

    Returns:
        A `TrainBatches` (a `ResumableIterator`) of dicts of `arrays`' keys
        `[batch_size, ...]` plus `batch_mask` (float32 ones `[batch_size]`).
    """
    batch_size = check_positive_int("batch_size", batch_size)
    process_index, process_count = check_process(process_index, process_count)
    share = num_examples(arrays) // process_count
    if share == 0:
        raise ValueError(
            f"`arrays` hold {num_examples(arrays)} examples: none for each of "
            f"`process_count` (={process_count}) hosts."
        )
    start = process_index * share
    spec = {"process_index": process_index, "process_count": process_count, **(state_spec or {})}
    return TrainBatches(
        take(arrays, slice(start, start + share)),
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        spec=spec,
    )


class EvalBatches:
    """One pass over this host's share of `arrays` per `iter()`, in padded batches.

    Hosts take contiguous shares that differ by at most one example (as
    `tfds.even_splits(..., drop_remainder=False)`); each pads its share with zero
    examples of `batch_mask` 0.0 up to the same number of full batches, so every host
    runs as many steps and every example counts exactly once overall.

    Arguments:
        arrays: examples along axis 0, as in `train_batches`.
        batch_size: examples per batch on this host.
        process_index: this host's index.
        process_count: the number of hosts.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        *,
        batch_size: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        self._batch_size = check_positive_int("batch_size", batch_size)
        process_index, process_count = check_process(process_index, process_count)
        bounds = np.linspace(0, num_examples(arrays), process_count + 1).round().astype(int)
        start, stop = bounds[process_index], bounds[process_index + 1]
        self._arrays = take(arrays, slice(start, stop))
        self._num_batches = -(-int(np.diff(bounds).max()) // self._batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for i in range(self._num_batches):
            rows = slice(i * self._batch_size, (i + 1) * self._batch_size)
            yield pad_batch(take(self._arrays, rows), self._batch_size)

    def __len__(self) -> int:
        return self._num_batches
