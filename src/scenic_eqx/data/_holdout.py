"""A validation split held out from the training split by `valid_fraction`.

The held-out examples are the *last* `round(valid_fraction * n)` of the `n` training
examples, in the split's stored order (a fixed tail, as Keras' `validation_split`):
the same examples whatever the seed, so validation metrics compare across runs. A
TFDS split says it as two slices, `train[:k]` and `train[k:]`; in-memory arrays are cut
at the same `k`. TFDS stores a split's examples in an order shuffled when it was
prepared; arrays are cut as given, so arrays ordered by class (or by time) should be
shuffled first if the tail is to look like the rest.
"""

import math
import numbers
import re

from ._in_memory import num_examples, take


def check_valid_fraction(valid_fraction: object) -> float | None:
    """Returns `valid_fraction` as a float in (0, 1), or None; else raises naming it.

    Arguments:
        valid_fraction: the value received; None means no validation split is held out.

    Returns:
        The fraction as a Python float, or None.
    """
    if valid_fraction is None:
        return None
    if (
        isinstance(valid_fraction, bool)
        or not isinstance(valid_fraction, numbers.Real)
        or not 0.0 < float(valid_fraction) < 1.0
    ):
        raise ValueError(
            "`valid_fraction` must be a number in (0, 1): the fraction of the training "
            "split held out for validation. Received: "
            f"{valid_fraction!r} of type {type(valid_fraction).__name__}."
        )
    return float(valid_fraction)


def held_out_sizes(num_train: int, valid_fraction: float, *, split: str = "train") -> tuple[int, int]:
    """How many training examples are kept, and how many are held out for validation.

    Arguments:
        num_train: the number of examples of the training split.
        valid_fraction: a float in (0, 1) (see `check_valid_fraction`).
        split: how the message names the training split.

    Returns:
        `(num_kept, num_valid)`: `num_valid = round(valid_fraction * num_train)` (halves
        rounded up), `num_kept = num_train - num_valid`, both positive.

    Raises:
        ValueError: either part would be empty; the message gives the sizes.
    """
    num_valid = math.floor(valid_fraction * num_train + 0.5)
    num_kept = num_train - num_valid
    if num_valid == 0 or num_kept == 0:
        empty = "validation" if num_valid == 0 else "training"
        raise ValueError(
            f"`valid_fraction` (={valid_fraction!r}) of the {num_train} examples of {split!r} "
            f"leaves an empty {empty} split ({num_kept} kept for training, {num_valid} held "
            f"out for validation); choose a fraction that leaves both non-empty. Received: "
            f"valid_fraction={valid_fraction!r}, {num_train} training examples."
        )
    return num_kept, num_valid


# A TFDS split name alone, without a slice (`train`, not `train[:90%]` or `train+test`).
_SPLIT_NAME = re.compile(r"^[\w-]+$")


def held_out_splits(split: str, num_train: int, valid_fraction: float) -> tuple[str, str]:
    """The TFDS slices that train on and validate on, when `valid_fraction` is held out.

    Arguments:
        split: the training split's name, e.g. `"train"`; a slice or a union of splits
            cannot be sliced again.
        num_train: the number of examples of `split`.
        valid_fraction: a float in (0, 1).

    Returns:
        `(f"{split}[:k]", f"{split}[k:]")` with `k` the number of examples kept for
        training (see `held_out_sizes`).
    """
    if not isinstance(split, str) or not _SPLIT_NAME.match(split):
        raise ValueError(
            f"`valid_fraction` holds out the tail of the training split, which must then be "
            f"a split name such as 'train', not a slice or a union of splits; give "
            f"`valid_split` instead. Received: a training split {split!r} with "
            f"valid_fraction={valid_fraction!r}."
        )
    num_kept, _ = held_out_sizes(num_train, valid_fraction, split=split)
    return f"{split}[:{num_kept}]", f"{split}[{num_kept}:]"


def held_out_arrays(arrays: dict, valid_fraction: float | None) -> tuple[dict, dict | None, str]:
    """In-memory arrays split into training and validation parts by `valid_fraction`.

    Arguments:
        arrays: the training split, examples along axis 0 (`inputs`, `label`, ...; a
            value may be a dict of arrays).
        valid_fraction: a float in (0, 1), or None to hold out nothing.

    Returns:
        `(train, valid, valid_source)`: the first `k` and the last examples, and
        `f"train[{k}:]"`; or `(arrays, None, "test")` when `valid_fraction` is None.
    """
    if valid_fraction is None:
        return arrays, None, "test"
    num_kept, _ = held_out_sizes(num_examples(arrays), valid_fraction)
    return take(arrays, slice(None, num_kept)), take(arrays, slice(num_kept, None)), f"train[{num_kept}:]"
