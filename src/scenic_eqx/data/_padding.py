"""Zero-padding a batch to a fixed size, with a `batch_mask` marking the real examples."""

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from ._checks import check_positive_int


def _path_name(path: tuple) -> str:
    """A key path of `jax.tree_util` as `"label/boxes"` (`"label/0"` for a sequence)."""
    parts = []
    for key in path:
        for attribute in ("key", "idx", "name"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def pad_batch(batch: Mapping[str, Any], batch_size: int) -> dict[str, Any]:
    """Pads every array of `batch` with zeros along axis 0 to `batch_size` rows.

    Arguments:
        batch: a dict whose values are arrays or pytrees of arrays (a label dict such
            as `{"boxes", "labels", "box_mask"}` or `{"class", "box"}`, nested dicts,
            tuples, lists), every array sharing its leading size `n <= batch_size`. A
            `batch_mask` already there (`[n]`, or per element, e.g. `[n, height, width]`
            for segmentation), or a dict of them (a co-training batch's, one per dataset),
            is kept for the real rows; without one, all `n` rows count as real.
        batch_size: the number of rows wanted.

    Returns:
        A new dict with the same structure (plus `batch_mask` if absent), every array of
        leading size `batch_size` and of its own dtype: rows `n:` are zeros (False for
        bool), and `batch_mask` (float32) is the given mask (or ones) on rows `:n` and
        0.0 on the padding.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    if not isinstance(batch, Mapping):
        raise ValueError(
            f"`batch` must be a dict of arrays (or of pytrees of arrays). Received: {type(batch).__name__}."
        )
    leaves, treedef = jax.tree_util.tree_flatten_with_path(dict(batch))
    arrays = [np.asarray(leaf) for _, leaf in leaves]
    sizes = {
        _path_name(path): (array.shape[0] if array.ndim else None) for (path, _), array in zip(leaves, arrays)
    }
    if not arrays or None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(
            "`batch` must be a non-empty dict of arrays sharing their leading size; "
            f"got leading sizes {sizes}."
        )
    (size,) = set(sizes.values())
    if size > batch_size:
        raise ValueError(f"`batch` has {size} examples, more than `batch_size` (={batch_size}).")

    def pad(value: np.ndarray) -> np.ndarray:
        widths = [(0, batch_size - size)] + [(0, 0)] * (value.ndim - 1)
        return np.pad(value, widths)

    padded = jax.tree_util.tree_unflatten(treedef, [pad(array) for array in arrays])
    # A mask of any rank (a per-pixel one too) pads with zeros like the other arrays;
    # the size check above guarantees its leading axis.
    # A co-training batch has a mask per dataset (`co_training_batches`).
    mask = padded.get("batch_mask", pad(np.ones((size,))))
    padded["batch_mask"] = jax.tree.map(lambda m: np.asarray(m).astype(np.float32), mask)
    return padded
