"""`check_batch`: a malformed batch is refused on the host, naming what is wrong."""

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from scenic_eqx.loops._batch_checks import check_batch

WHERE = "batch 0 of `train_batches`"


def _batch(size=4, **entries):
    batch = {
        "inputs": np.zeros((size, 8, 8, 3), np.float32),
        "label": np.zeros((size,), np.int32),
        "batch_mask": np.ones((size,), np.float32),
    }
    batch.update(entries)
    return {k: v for k, v in batch.items() if v is not None}


def test_good_batches_give_their_size():
    assert check_batch(_batch(), where=WHERE) == 4
    # Nested labels (detection), jax arrays, bfloat16 inputs, a per-pixel mask.
    detection = _batch(label={"boxes": np.zeros((4, 3, 4)), "labels": np.zeros((4, 3), int)})
    assert check_batch(detection, where=WHERE) == 4
    assert check_batch(_batch(inputs=jnp.zeros((4, 2), jnp.bfloat16)), where=WHERE) == 4
    pixels = _batch(label=np.zeros((4, 8, 8), np.int32), batch_mask=np.ones((4, 8, 8)))
    assert check_batch(pixels, where=WHERE, num_devices=2) == 4
    # Only the keys asked for are required.
    assert check_batch({"inputs": np.zeros((2, 3))}, where=WHERE, required=("inputs",)) == 2


@pytest.mark.parametrize(
    "batch, error, match",
    [
        (
            [np.zeros(3)],
            TypeError,
            r"batch 0 of `train_batches` must be a dict of arrays .* Received: list\.",
        ),
        (
            _batch(label=None, labels=np.zeros(4)),
            ValueError,
            r"must have the entries 'inputs', 'label'. Received: a batch with keys "
            r"\['batch_mask', 'inputs', 'labels'\], without 'label'\.",
        ),
        (
            _batch(inputs=None, image=np.zeros((4, 2))),
            ValueError,
            r"Received: a batch with keys \['batch_mask', 'image', 'label'\], without 'inputs'\.",
        ),
        (
            _batch(label=np.zeros(3, np.int32)),
            ValueError,
            r"every entry must have the same leading \(batch\) size. Received: `batch_mask` "
            r"\(4,\), `inputs` \(4, 8, 8, 3\), `label` \(3,\)\.",
        ),
        (
            _batch(label={"boxes": np.zeros((4, 2, 4)), "labels": np.zeros((5, 2))}),
            ValueError,
            r"`label\['labels'\]` \(5, 2\)",
        ),
        (
            _batch(batch_mask=np.ones((4, 1))),
            ValueError,
            r"`batch_mask` must have shape \(4,\) \(one weight per example, or per "
            r"label entry\)\. Received: shape \(4, 1\)\.",
        ),
        (
            _batch(label=np.array(["cat"] * 4)),
            TypeError,
            r"every entry must hold numbers or booleans. Received: dtype <U3 for `label`\.",
        ),
        (
            _batch(label=[0, 1, 2, 3]),
            TypeError,
            r"every entry must be a numpy or jax array. Received: int for `label\[0\]`\.",
        ),
        (
            _batch(label=np.array(1)),
            ValueError,
            r"every entry must have a leading batch axis. Received: a scalar for `label`\.",
        ),
        ({"inputs": {}, "label": {}}, ValueError, r"must hold arrays. Received: an empty batch\."),
    ],
)
def test_malformed_batches_are_named(batch, error, match):
    with pytest.raises(error, match=match):
        check_batch(batch, where=WHERE)


def test_batch_size_must_divide_by_the_devices():
    match = (
        r"batch 0 of `train_batches`: the batch size must be a multiple of the number of "
        r"devices \(=8\), which split it. Received: a batch of 4\."
    )
    with pytest.raises(ValueError, match=match):
        check_batch(_batch(), where=WHERE, num_devices=8)


def test_bfloat16_numpy_arrays_are_numbers():
    batch = _batch(inputs=np.zeros((4, 2), ml_dtypes.bfloat16))
    assert check_batch(batch, where=WHERE) == 4
