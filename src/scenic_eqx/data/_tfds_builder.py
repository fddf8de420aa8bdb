"""Reading a TFDS builder: whether it is readable, its splits and their sizes.

Works the same on a prepared dataset and under `tfds.testing.mock_data`, including
TFDS's default mocking, where nothing is prepared and no split is known: the fake
examples are read as if the dataset were there. Importing this module imports
TensorFlow Datasets.
"""

import tensorflow as tf
import tensorflow_datasets as tfds


def is_readable(builder) -> bool:
    """Whether `builder.as_dataset` serves examples, without downloading anything.

    True for a prepared dataset, and under `tfds.testing.mock_data`, which serves fake
    examples although nothing is prepared (TFDS's documented way to test a pipeline).
    """
    if builder.is_prepared():
        return True
    try:
        # Unprepared and not mocked, `as_dataset` fails at once on the missing files.
        builder.as_dataset(split="train")
    except AssertionError:
        return False
    return True


def read(builder, split, *, shuffle_seed: int | None, decoders=None) -> tf.data.Dataset:
    """`builder.as_dataset(split)`, its files shuffled by `shuffle_seed` unless None."""
    read_config = tfds.ReadConfig(
        shuffle_seed=shuffle_seed,
        # We cache explicitly where wanted; TFDS's own autocache would cache twice.
        try_autocache=False,
    )
    return builder.as_dataset(
        split=split,
        shuffle_files=shuffle_seed is not None,
        read_config=read_config,
        decoders=decoders,
    )


def split_size(builder, split) -> int:
    """The number of examples of `split` (a split, a slice such as `"train[:90%]"`, or
    a `tfds.even_splits` share) of a readable builder.

    Read from the builder's metadata; under `tfds.testing.mock_data` without metadata
    files (TFDS's default), no split is known, and the size is that of the fake
    examples `as_dataset` serves (their cardinality).
    """
    if len(builder.info.splits):
        return builder.info.splits[split].num_examples
    size = int(read(builder, split, shuffle_seed=None).cardinality())
    if size < 0:
        raise ValueError(
            f"The size of split {split!r} of {builder.name!r} is unknown: the dataset has "
            f"no split metadata and an unknown cardinality. Received: {split!r}."
        )
    return size


def check_split(builder, name: str, split: object) -> str:
    """Returns `split` if it names a split of `builder` (or a slice of one), else raises.

    Arguments:
        builder: a readable TFDS builder.
        name: the argument's name, for the error message.
        split: the value received, e.g. `"train"` or `"train[:90%]"`.

    Returns:
        `split`.
    """
    known = sorted(builder.info.splits)
    if not isinstance(split, str):
        raise ValueError(
            f"`{name}` must be a split name of {builder.name!r} ({', '.join(known) or 'any'}) "
            f"or a slice of one (e.g. 'train[:90%]'). Received: {split!r} of type "
            f"{type(split).__name__}."
        )
    if not known:  # Not generated (`tfds.testing.mock_data`): every split is accepted.
        return split
    try:
        builder.info.splits[split]
    except (KeyError, ValueError, AssertionError) as error:
        raise ValueError(
            f"`{name}` must be a split name of {builder.name!r} ({', '.join(known)}) or a "
            f"slice of one (e.g. '{known[0]}[:90%]'). Received: {split!r} ({error})."
        ) from None
    return split
