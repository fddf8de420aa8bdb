"""Loading data executes nothing from the file: pickles are refused, saying why.

The payload is an object whose pickle calls `open(marker, "w")` when loaded: if any
loader unpickled it, the marker file would appear.
"""

import io
import os
import pickle

import numpy as np
import pytest

from scenic_eqx import data
from scenic_eqx.data import _mnist


class _CreatesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def _npz(path, payload, key="x_train"):
    arrays = {
        "x_train": np.zeros((2, 2, 2, 1), np.uint8),
        "y_train": np.array([0, 1]),
        "x_test": np.zeros((2, 2, 2, 1), np.uint8),
        "y_test": np.array([0, 1]),
    }
    arrays[key] = np.array([payload], dtype=object)
    np.savez(path, **arrays)
    return path


def test_the_payload_would_create_the_file(tmp_path):
    """The control: loading the archive with pickles allowed does run the payload."""
    marker = tmp_path / "ran"
    path = _npz(tmp_path / "evil.npz", _CreatesAFile(str(marker)))
    with np.load(path, allow_pickle=True) as arrays:
        arrays["x_train"][0].close()
    assert marker.exists()


@pytest.mark.parametrize("key", ["x_train", "y_test"])
def test_npz_with_an_object_array_is_refused(tmp_path, key):
    marker = tmp_path / "ran"
    path = _npz(tmp_path / "evil.npz", _CreatesAFile(str(marker)), key=key)
    match = (
        rf"`npz` \(=.*evil.npz'\) is refused: `{key}` is an object array, i.e. a Python "
        r"pickle, and unpickling can run arbitrary code from the file\. Save plain numeric "
        r"arrays .*Received: "
    )
    with pytest.raises(ValueError, match=match):
        data.get_dataset("arrays", npz=str(path), batch_size=2, process_index=0, process_count=1)
    assert not marker.exists()


def test_a_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"x_train": _CreatesAFile(str(marker))}))
    match = r"is refused: it holds pickled Python objects, and unpickling can run arbitrary code"
    with pytest.raises(ValueError, match=match):
        data.get_dataset("arrays", npz=str(path), batch_size=2, process_index=0, process_count=1)
    assert not marker.exists()


def test_a_npy_file_is_not_an_archive(tmp_path):
    path = tmp_path / "one.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match=r"must be an .npz archive .*Received: a file holding one ndarray"):
        data.get_dataset("arrays", npz=str(path), batch_size=2, process_index=0, process_count=1)


def test_object_arrays_given_in_memory_are_refused():
    inputs = np.array([_CreatesAFile(os.devnull)] * 2, dtype=object)
    with pytest.raises(ValueError, match=r"`train` inputs must be uint8 or floating. Received: dtype object"):
        data.from_arrays((inputs, np.array([0, 1])), (inputs, np.array([0, 1])), batch_size=2)


def test_the_mnist_unpickler_builds_arrays_only(tmp_path):
    # (That it reads the wheel's MNIST pickle is tested in test_mnist_offline.py.)
    marker = tmp_path / "ran"
    refused = pickle.dumps((3, _CreatesAFile(str(marker))), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"numpy arrays only; it names io.open"):
        _mnist._ArraysOnlyUnpickler(io.BytesIO(refused)).load()
    assert not marker.exists()
