"""Zero-padding a batch to a fixed size, with a `batch_mask` marking the real examples."""

import numpy as np
from numpy.typing import ArrayLike

from ._checks import check_positive_int


def pad_batch(batch: dict[str, ArrayLike], batch_size: int) -> dict[str, np.ndarray]:
    """Pads every array of `batch` with zeros along axis 0 to `batch_size` rows.

    Arguments:
        batch: a dict of arrays sharing their leading size `n <= batch_size`. A
            `batch_mask` already there (`[n]`, or per element, e.g. `[n, height, width]`
            for segmentation) is kept for the real rows; without one,
            all `n` rows count as real.
        batch_size: the number of rows wanted.

    Returns:
        A new dict with the same keys (plus `batch_mask` if absent), every array of
        leading size `batch_size`: rows `n:` are zeros, and `batch_mask` (float32) is
        the given mask (or ones) on rows `:n` and 0.0 on the padding.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    arrays = {key: np.asarray(value) for key, value in batch.items()}
    sizes = {key: (value.shape[0] if value.ndim else None) for key, value in arrays.items()}
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
    arrays["batch_mask"] = arrays.get("batch_mask", np.ones((size,))).astype(np.float32)

    def pad(value: np.ndarray) -> np.ndarray:
        widths = [(0, batch_size - size)] + [(0, 0)] * (value.ndim - 1)
        return np.pad(value, widths)

    return {key: pad(value) for key, value in arrays.items()}
