"""tf.data pipelines over a prepared TFDS builder: shuffled training, padded evaluation.

Reusable for any TFDS dataset whose examples `preprocess_fn` maps to fixed-shape
`inputs` and `label`. Importing this module imports TensorFlow; `get_dataset` imports
it lazily so that `import scenic_eqx.data` stays TensorFlow-free.
"""

import math
import os
from collections.abc import Callable, Iterator

import numpy as np

# Before the first TensorFlow import: its C++ logging is noise in a JAX program.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from ._checks import check_positive_int, check_process  # noqa: E402
from ._dataset import Batch  # noqa: E402
from ._tf_iterator import numpy_iterator  # noqa: E402
from ._tfds_builder import read as _read, split_size  # noqa: E402

Preprocess = Callable[[dict], dict]


def image_classification(example: dict) -> dict:
    """Maps a TFDS `{"image", "label"}` example to `{"inputs", "label"}`.

    Arguments:
        example: `image` uint8 `[height, width, channels]`, `label` integer scalar.

    Returns:
        `inputs` float32 in [0, 1] and `label` int32.
    """
    return {
        "inputs": tf.cast(example["image"], tf.float32) / 255.0,
        "label": tf.cast(example["label"], tf.int32),
    }


def _with_mask(example: dict) -> dict:
    return {**example, "batch_mask": tf.constant(1.0, tf.float32)}


def _map(ds: tf.data.Dataset, fn: Callable) -> tf.data.Dataset:
    # Preprocessing is graph code already (tf.cond, not Python `if`): AutoGraph has
    # nothing to convert, and it warns when it cannot read a function's source (as under
    # the jaxtyping import hook of the tests).
    fn = tf.autograph.experimental.do_not_convert(fn)
    return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def _leaves(spec, path: str = ""):
    """`(path, leaf)` pairs of nested dicts, paths joined by "/"."""
    if not isinstance(spec, dict):
        yield path, spec
        return
    for key, value in spec.items():
        yield from _leaves(value, f"{path}/{key}" if path else key)


def _materialised(ds: tf.data.Dataset) -> tf.data.Dataset | None:
    """`ds` read into memory and sliced by index, when it is finite with fixed shapes.

    The same elements in the same order as `ds.cache()`, but read at once, here: then
    the iterator's saved state is an index, whereas a saved `cache()` holds every
    cached example (the whole split, at every checkpoint). None for elements of
    variable shape or a dataset of unknown size, which are cached as usual.
    """
    size = int(ds.cardinality())
    fixed = all(spec.shape.is_fully_defined() for spec in tf.nest.flatten(ds.element_spec))
    if size <= 0 or not fixed:
        return None
    return tf.data.Dataset.from_tensor_slices(ds.batch(size).get_single_element())


def train_batches(
    builder,
    split: str,
    *,
    batch_size: int,
    shuffle_seed: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    preprocess_fn: Preprocess = image_classification,
    shuffle_buffer_size: int = 10_000,
    cache: bool = True,
    prefetch: int = 2,
    random_preprocess_fn: Callable[[dict, tf.Tensor], dict] | None = None,
    decoders: dict | None = None,
    state_spec: dict | None = None,
) -> Iterator[Batch]:
    """An infinite iterator of shuffled training batches of this host's share of `split`.

    Each host reads `tfds.even_splits(split, process_count, drop_remainder=True)`
    `[process_index]`: disjoint equal shares, the remainder dropped. The same
    `shuffle_seed` gives the same sequence of batches.

    Arguments:
        builder: a prepared `tfds.core.DatasetBuilder`.
        split: a TFDS split (`"train"`, `"train[:90%]"`, ...).
        batch_size: examples per batch on this host.
        shuffle_seed: seed of file and example shuffling.
        process_index: this host's index.
        process_count: the number of hosts.
        preprocess_fn: maps a TFDS example to fixed-shape `inputs` and `label`.
        shuffle_buffer_size: size of the example shuffle buffer.
        cache: keep the decoded split in memory after the first epoch (small datasets).
        prefetch: batches prepared ahead.
        random_preprocess_fn: seeded augmentation that replaces `preprocess_fn`, after
            the cache (see `train_pipeline`).
        decoders: TFDS decoders of the features (e.g. `tfds.decode.SkipDecoding()` for
            an image that `random_preprocess_fn` decodes itself).
        state_spec: what else identifies the pipeline in its saved state (the dataset's
            own options), as in `train_pipeline`; the dataset, split and hosts are added.

    Returns:
        An iterator of numpy dicts `inputs` `[batch_size, ...]`, `label`
        `[batch_size]`, `batch_mask` ones `[batch_size]`; a `ResumableIterator` (see
        `train_pipeline`).
    """
    batch_size = check_positive_int("batch_size", batch_size)
    shuffle_buffer_size = check_positive_int("shuffle_buffer_size", shuffle_buffer_size)
    process_index, process_count = check_process(process_index, process_count)
    host_split = tfds.even_splits(split, n=process_count, drop_remainder=True)[process_index]
    if split_size(builder, host_split) == 0:
        # `repeat()` over nothing would spin forever instead of failing.
        raise ValueError(
            f"Split {split!r} has no examples for `process_index` (={process_index}) "
            f"of `process_count` (={process_count})."
        )
    ds = _read(builder, host_split, shuffle_seed=shuffle_seed, decoders=decoders)
    return train_pipeline(
        ds,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        preprocess_fn=preprocess_fn,
        shuffle_buffer_size=shuffle_buffer_size,
        cache=cache,
        prefetch=prefetch,
        random_preprocess_fn=random_preprocess_fn,
        process_index=process_index,
        state_spec={
            "dataset": builder.name,
            "split": str(split),
            "process_count": process_count,
            **(state_spec or {}),
        },
    )


def augmentation_seed(shuffle_seed: int, process_index: int) -> int:
    """The seed of host `process_index`'s augmentation draws.

    Hosts read disjoint examples but would otherwise draw the same sequence of
    augmentations (the `i`-th example of every host cropped and flipped alike). Host 0
    keeps `shuffle_seed` itself, so one-host runs draw as they always have.
    """
    if process_index == 0:
        return shuffle_seed
    return int(np.random.SeedSequence([shuffle_seed, process_index]).generate_state(1)[0])


def train_pipeline(
    ds: tf.data.Dataset,
    *,
    batch_size: int,
    shuffle_seed: int = 0,
    preprocess_fn: Preprocess = image_classification,
    shuffle_buffer_size: int = 10_000,
    cache: bool = True,
    prefetch: int = 2,
    random_preprocess_fn: Callable[[dict, tf.Tensor], dict] | None = None,
    process_index: int = 0,
    state_spec: dict | None = None,
) -> Iterator[Batch]:
    """`train_batches` from a host's share `ds` of any source (not only a TFDS builder).

    Arguments:
        ds: this host's examples, finite or not.
        batch_size, shuffle_seed, preprocess_fn, shuffle_buffer_size, cache, prefetch:
            as in `train_batches`.
        random_preprocess_fn: if given, replaces `preprocess_fn` and is called as
            `random_preprocess_fn(example, seed)` with a fresh int64 `[2]` seed for
            stateless random ops (`tf.random.stateless_*`) at every draw, so that
            augmentation differs across epochs yet the same `shuffle_seed` gives the
            same batches.
        process_index: this host's index, folded into the augmentation seeds (see
            `augmentation_seed`) so that hosts augment independently.
        state_spec: JSON values that identify the source and preprocessing (dataset
            name, split, image size, ...) in the saved state, beside the options above:
            a state is restored only into a pipeline of the same spec.

    Returns:
        An infinite iterator of numpy batches, as `train_batches`: a
        `ResumableIterator` whose state is tf.data's checkpoint of the pipeline (see
        `_tf_iterator.py`), unless `ds` holds state tf.data cannot save (a
        `from_generator` source), in which case a plain iterator. With `cache`, a
        finite `ds` of fixed shapes is read into memory here rather than during the
        first epoch, so that the saved state holds no copy of the cache (see
        `_materialised`); the batches are the same.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    shuffle_buffer_size = check_positive_int("shuffle_buffer_size", shuffle_buffer_size)
    spec = {
        "batch_size": batch_size,
        "shuffle_seed": shuffle_seed,
        "shuffle_buffer_size": shuffle_buffer_size,
        "cache": bool(cache),
        "augmented": random_preprocess_fn is not None,
        "process_index": process_index,
        **(state_spec or {}),
    }
    seed = augmentation_seed(shuffle_seed, process_index)

    def pipeline(ds: tf.data.Dataset) -> tf.data.Dataset:
        ds = ds.repeat()
        ds = ds.shuffle(shuffle_buffer_size, seed=shuffle_seed)
        if random_preprocess_fn is None:
            ds = _map(ds, lambda x: _with_mask(preprocess_fn(x)))
        else:
            seeds = tf.data.Dataset.random(seed=seed).batch(2)
            ds = _map(
                tf.data.Dataset.zip(ds, seeds),
                lambda x, seed: _with_mask(random_preprocess_fn(x, seed)),
            )
        ds = ds.batch(batch_size, drop_remainder=True)
        return ds.prefetch(prefetch)

    in_memory = _materialised(ds) if cache else None
    if in_memory is None:
        return numpy_iterator(pipeline(ds.cache() if cache else ds), spec)
    # Whether tf.data can save the pipeline depends on its ops, not on the data: check
    # them on a one-example stand-in rather than serialise the tensors held in memory.
    stand_in = tf.data.Dataset.from_tensors(
        tf.nest.map_structure(lambda x: tf.zeros(x.shape, x.dtype), ds.element_spec)
    )
    return numpy_iterator(pipeline(in_memory), spec, check=pipeline(stand_in))


class EvalBatches:
    """One padded pass over a split per `iter()`; `len()` is the number of batches."""

    def __init__(self, dataset: tf.data.Dataset, num_batches: int):
        self._dataset = dataset
        self._num_batches = num_batches

    def __iter__(self) -> Iterator[Batch]:
        return iter(tfds.as_numpy(self._dataset))

    def __len__(self) -> int:
        return self._num_batches

    @property
    def element_spec(self) -> dict:
        """The `tf.TensorSpec` of each array of a batch, known without running a pass."""
        return self._dataset.element_spec


def eval_batches(
    builder,
    split: str,
    *,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    preprocess_fn: Preprocess = image_classification,
    cache: bool = True,
    prefetch: int = 2,
    decoders: dict | None = None,
) -> EvalBatches:
    """This host's share of `split` in padded batches, one fresh pass per `iter()`.

    Hosts read `tfds.even_splits(split, process_count)` (no example dropped; shares
    differ by at most one). Each host pads its share with zero examples of
    `batch_mask` 0.0 up to the same number of full batches, so that every host runs as
    many evaluation steps and every example is counted exactly once overall.

    Arguments:
        builder: a prepared `tfds.core.DatasetBuilder`.
        split: a TFDS split.
        batch_size: examples per batch on this host.
        process_index: this host's index.
        process_count: the number of hosts.
        preprocess_fn: maps a TFDS example to fixed-shape `inputs` and `label`.
        cache: keep the decoded split in memory after the first pass.
        prefetch: batches prepared ahead.
        decoders: TFDS decoders of the features, as in `train_batches`.

    Returns:
        An `EvalBatches` of numpy dicts `inputs` `[batch_size, ...]`, `label`
        `[batch_size]`, `batch_mask` `[batch_size]`.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    process_index, process_count = check_process(process_index, process_count)
    host_splits = tfds.even_splits(split, n=process_count, drop_remainder=False)
    counts = [split_size(builder, s) for s in host_splits]
    ds = _read(builder, host_splits[process_index], shuffle_seed=None, decoders=decoders)
    return eval_pipeline(
        ds,
        host_counts=counts,
        process_index=process_index,
        batch_size=batch_size,
        preprocess_fn=preprocess_fn,
        cache=cache,
        prefetch=prefetch,
    )


def even_shares(num_examples: int, process_count: int) -> list[int]:
    """The sizes of `process_count` shares of `num_examples` that differ by at most one."""
    quotient, remainder = divmod(num_examples, process_count)
    return [quotient + (i < remainder) for i in range(process_count)]


def eval_pipeline(
    ds: tf.data.Dataset,
    *,
    host_counts: list[int],
    process_index: int,
    batch_size: int,
    preprocess_fn: Preprocess = image_classification,
    cache: bool = True,
    prefetch: int = 2,
) -> EvalBatches:
    """`eval_batches` from a host's share `ds` of any source (not only a TFDS builder).

    Arguments:
        ds: this host's examples: exactly `host_counts[process_index]` of them.
        host_counts: the number of examples of every host, which all hosts must agree
            on: each pads its share to `ceil(max(host_counts) / batch_size)` batches.
        process_index: this host's index.
        batch_size, preprocess_fn, cache, prefetch: as in `eval_batches`.

    Returns:
        An `EvalBatches`, as `eval_batches`.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    num_batches = math.ceil(max(host_counts) / batch_size)
    num_padding = num_batches * batch_size - host_counts[process_index]
    if cache:
        ds = ds.cache()
    ds = _map(ds, lambda x: _with_mask(preprocess_fn(x)))
    spec = ds.element_spec
    # Label pytrees (detection's boxes, labels, box_mask) nest: pad every leaf.
    for key, value in _leaves(spec):
        if not value.shape.is_fully_defined():
            raise ValueError(
                f"`preprocess_fn` must give fixed shapes to pad evaluation batches; "
                f"{key!r} has shape {value.shape}."
            )
    padding = tf.nest.map_structure(lambda value: tf.zeros(value.shape, value.dtype), spec)
    ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(num_padding))
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(prefetch)
    return EvalBatches(ds, num_batches)
