import numpy as np
import pytest

from scenic_eqx.data import pad_batch
from scenic_eqx.data._checks import check_positive_int


def test_pads_with_zeros_and_masks_the_padding():
    batch = {
        "inputs": np.arange(1, 7, dtype=np.float32).reshape(3, 2),
        "label": np.array([4, 5, 6], np.int32),
    }
    padded = pad_batch(batch, 5)
    np.testing.assert_array_equal(padded["inputs"], [[1, 2], [3, 4], [5, 6], [0, 0], [0, 0]])
    np.testing.assert_array_equal(padded["label"], [4, 5, 6, 0, 0])
    np.testing.assert_array_equal(padded["batch_mask"], [1, 1, 1, 0, 0])
    assert padded["inputs"].dtype == np.float32
    assert padded["label"].dtype == np.int32
    assert padded["batch_mask"].dtype == np.float32
    assert "batch_mask" not in batch  # the input is left alone


def test_keeps_an_existing_mask_on_the_real_rows():
    batch = {"label": np.array([1, 2, 3]), "batch_mask": np.array([1.0, 0.0, 1.0])}
    padded = pad_batch(batch, 4)
    np.testing.assert_array_equal(padded["batch_mask"], [1, 0, 1, 0])
    np.testing.assert_array_equal(padded["label"], [1, 2, 3, 0])


def test_full_batch_is_unchanged_but_gets_a_mask():
    batch = {"label": np.array([7, 8])}
    padded = pad_batch(batch, 2)
    np.testing.assert_array_equal(padded["label"], [7, 8])
    np.testing.assert_array_equal(padded["batch_mask"], [1, 1])


def test_too_large_batch_names_both_sizes():
    with pytest.raises(ValueError, match=r"has 6 examples, more than `batch_size` \(=5\)"):
        pad_batch({"label": np.zeros(6)}, 5)


def test_mismatched_leading_sizes():
    with pytest.raises(ValueError, match="sharing their leading size"):
        pad_batch({"label": np.zeros(3), "inputs": np.zeros((2, 4))}, 5)
    with pytest.raises(ValueError, match="sharing their leading size"):
        pad_batch({}, 5)
    with pytest.raises(ValueError, match="sharing their leading size"):
        pad_batch({"label": np.float32(1.0)}, 5)


def test_per_pixel_mask_and_label_maps_are_padded():
    mask = np.array([[[1.0, 0.0], [1.0, 1.0]], [[0.5, 1.0], [1.0, 1.0]]])
    batch = {"label": np.ones((2, 2, 2), np.int32), "batch_mask": mask}
    padded = pad_batch(batch, 3)
    assert padded["batch_mask"].dtype == np.float32
    np.testing.assert_array_equal(padded["batch_mask"], np.concatenate([mask, np.zeros((1, 2, 2))]))
    np.testing.assert_array_equal(padded["label"], [[[1, 1], [1, 1]]] * 2 + [[[0, 0], [0, 0]]])


@pytest.mark.parametrize("batch_size", [0, -2, True])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match=r"`batch_size` \(=.*\) must be a positive integer"):
        pad_batch({"label": np.zeros(1)}, batch_size)


@pytest.mark.parametrize("value", [2.0, "3", None, np.int64(0)])
def test_check_positive_int_rejects_non_integers(value):
    # Called with unchecked user values before any annotation could catch them.
    with pytest.raises(ValueError, match=r"`eval_batch_size` \(=.*\) must be a positive"):
        check_positive_int("eval_batch_size", value)


def test_check_positive_int_accepts_numpy_integers():
    assert check_positive_int("batch_size", np.int32(3)) == 3
    assert type(check_positive_int("batch_size", np.int32(3))) is int


def test_pads_nested_label_pytrees():
    batch = {
        "inputs": np.ones((2, 3), np.float32),
        "label": {
            "boxes": np.full((2, 4, 4), 0.5, np.float32),
            "labels": np.array([[1, 2, 0, 0], [3, 0, 0, 0]], np.int32),
            "box_mask": np.array([[1, 1, 0, 0], [1, 0, 0, 0]], np.float32),
        },
    }
    padded = pad_batch(batch, 3)
    assert set(padded) == {"inputs", "label", "batch_mask"}
    assert set(padded["label"]) == {"boxes", "labels", "box_mask"}
    np.testing.assert_array_equal(padded["label"]["labels"], [[1, 2, 0, 0], [3, 0, 0, 0], [0] * 4])
    np.testing.assert_array_equal(padded["label"]["boxes"][2], 0.0)
    assert padded["label"]["boxes"].shape == (3, 4, 4) and padded["label"]["labels"].dtype == np.int32
    np.testing.assert_array_equal(padded["batch_mask"], [1, 1, 0])
    with pytest.raises(ValueError, match=r"leading size; got leading sizes .*'label/boxes': 1"):
        pad_batch({**batch, "label": {**batch["label"], "boxes": np.zeros((1, 4))}}, 3)
