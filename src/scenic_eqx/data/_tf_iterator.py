"""Numpy batches of a tf.data pipeline, with its position saved by tf.data checkpointing.

tf.data checkpoints an iterator's whole state: every source's read position, the shuffle
buffer's examples, the random generators, and the elements already prepared by
`prefetch` and parallel `map` but not yet taken. So the saved position is the
consumer's (see `ResumableIterator`), and a restored iterator continues bitwise as the
uninterrupted one. The state's size is dominated by the shuffle buffer:
`shuffle_buffer_size` examples as they enter it (encoded JPEGs for ImageNet, decoded
images for the small datasets), plus the batches prefetched and the examples in flight
in parallel maps. Conversion to numpy happens one batch at a time on `next()`, with no
Python-side read-ahead. Importing this module imports TensorFlow.

tf.data's symbolic checkpointing (`experimental_symbolic_checkpoint`), which would leave
the prefetched batches out of the state, is not used: with TensorFlow 2.21 it restored
a parallel `interleave` (as TFDS reads sharded files) to a different continuation,
and it does not support `cache()`.
"""

import os
from collections.abc import Iterator, Mapping
from typing import Any

import tensorflow as tf

from ._dataset import Batch
from ._resumable import begin_save, finish_save, read_state

_PREFIX = "tf_data_iterator"


def _to_numpy(element) -> Any:
    # As `tfds.as_numpy`: `_numpy()` shares the tensor's buffer instead of copying it.
    return tf.nest.map_structure(lambda t: t._numpy(), element)


class _NumpyIterator:
    """Numpy batches of a tf.data iterator that cannot be saved (see `numpy_iterator`)."""

    def __init__(self, iterator):
        self._iterator = iterator

    def __iter__(self) -> "_NumpyIterator":
        return self

    def __next__(self) -> Batch:
        return _to_numpy(next(self._iterator))


class TfDataIterator(_NumpyIterator):
    """Numpy batches of a tf.data iterator, a `ResumableIterator` by tf.data checkpointing.

    Arguments:
        iterator: an iterator of a `tf.data.Dataset` whose ops can all be checkpointed
            (see `numpy_iterator`).
        spec: JSON values that identify the pipeline (dataset, split, batch size, seed,
            ...): a state is restored only into a pipeline of the same spec.
    """

    def __init__(self, iterator, spec: Mapping[str, Any]):
        super().__init__(iterator)
        self._checkpoint = tf.train.Checkpoint(iterator=iterator)
        self._spec = {"pipeline": "tf.data", **spec}

    def save_state(self, directory: str) -> None:
        """Writes the iterator's state (see `ResumableIterator`) into `directory`."""
        directory = begin_save(directory)
        self._checkpoint.write(os.path.join(directory, _PREFIX))
        finish_save(directory, self._spec, {})

    def restore_state(self, directory: str) -> None:
        """Restores the state saved in `directory` (see `ResumableIterator`)."""
        read_state(directory, self._spec)
        prefix = os.path.join(os.fspath(directory), _PREFIX)
        try:
            self._checkpoint.read(prefix).assert_consumed()
        except (tf.errors.OpError, AssertionError, ValueError) as error:
            raise ValueError(
                f"The input position saved in `directory` (={os.fspath(directory)!r}) does "
                f"not fit this pipeline, although its dataset and options match (was it "
                f"saved by another version of the code?): {error}. Received: {prefix!r}."
            ) from error


def _checkpointable(dataset: tf.data.Dataset) -> bool:
    """Whether tf.data can save an iterator of `dataset`: no op holds state it cannot see.

    Such an op (`from_generator`'s Python generator, `py_function`, a variable) makes
    saving fail, but only once the iterator has started; the dataset's graph tells it
    beforehand. A dataset whose options set `experimental_external_state_policy` to
    WARN or IGNORE saves anyway, that state left out, as its author chose.
    """
    fail = tf.data.experimental.ExternalStatePolicy.FAIL
    if dataset.options().experimental_external_state_policy not in (None, fail):
        # Also, serialising such a dataset would leave its policy in TensorFlow's cached
        # kernel, which would then pass every later dataset.
        return True
    try:
        dataset._as_serialized_graph(external_state_policy=fail)
    except tf.errors.FailedPreconditionError:
        return False
    return True


def numpy_iterator(
    dataset: tf.data.Dataset, spec: Mapping[str, Any], *, check: tf.data.Dataset | None = None
) -> Iterator[Batch]:
    """An iterator of `dataset`'s elements as numpy: resumable when tf.data can save it.

    Arguments:
        dataset: a `tf.data.Dataset`.
        spec: what identifies the pipeline, for `TfDataIterator`.
        check: a dataset with the same ops as `dataset` on which to check that they can
            be saved (default: `dataset` itself; a stand-in avoids serialising large
            tensors that `dataset` holds).

    Returns:
        A `TfDataIterator`, or a plain iterator when `dataset` holds state that tf.data
        cannot checkpoint (a `from_generator` source, as `tfds.testing.mock_data`'s
        default examples): a trainer then resumes it by replay.
    """
    if not _checkpointable(dataset if check is None else check):
        return _NumpyIterator(iter(dataset))
    spec = {"element_spec": repr(dataset.element_spec), **spec}
    return TfDataIterator(iter(dataset), spec)
