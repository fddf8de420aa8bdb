"""Zero-padding a batch to a fixed size, with a `batch_mask` marking the real examples."""

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._checks import check_positive_int


def _leaves(tree: Mapping, prefix: tuple = ()) -> dict[tuple, np.ndarray]:
    """The arrays of nested dicts, by their path of keys."""
    leaves = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            leaves.update(_leaves(value, (*prefix, key)))
        else:
            leaves[(*prefix, key)] = np.asarray(value)
    return leaves


def _nest(leaves: dict[tuple, np.ndarray]) -> dict:
    tree: dict = {}
    for path, value in leaves.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def pad_batch(batch: Mapping[str, Any], batch_size: int) -> dict[str, Any]:
    """Pads every array of `batch` with zeros along axis 0 to `batch_size` rows.

    Arguments:
        batch: a dict of arrays, or of nested dicts of arrays (a label pytree such as
            `{"boxes", "labels", "box_mask"}`), all sharing their leading size
            `n <= batch_size`. A `batch_mask` already there (`[n]`, or per element,
            e.g. `[n, height, width]` for segmentation) is kept for the real rows;
            without one, all `n` rows count as real.
        batch_size: the number of rows wanted.

    Returns:
        A new dict with the same structure (plus `batch_mask` if absent), every array of
        leading size `batch_size`: rows `n:` are zeros, and `batch_mask` (float32) is
        the given mask (or ones) on rows `:n` and 0.0 on the padding.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    arrays = _leaves(batch)
    sizes = {
        "/".join(map(str, path)): (value.shape[0] if value.ndim else None)
        for path, value in arrays.items()
    }
    if not arrays or None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(
            "`batch` must be a non-empty dict of arrays sharing their leading size; "
            f"got leading sizes {sizes}."
        )
    (size,) = set(sizes.values())
    if size > batch_size:
        raise ValueError(
            f"`batch` has {size} examples, more than `batch_size` (={batch_size})."
        )
    # A mask of any rank (a per-pixel one too) pads with zeros like the other arrays;
    # the size check above guarantees its leading axis.
    mask = arrays.get(("batch_mask",), np.ones((size,)))
    arrays[("batch_mask",)] = mask.astype(np.float32)

    def pad(value: np.ndarray) -> np.ndarray:
        widths = [(0, batch_size - size)] + [(0, 0)] * (value.ndim - 1)
        return np.pad(value, widths)

    return _nest({path: pad(value) for path, value in arrays.items()})
