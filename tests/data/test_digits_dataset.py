"""`get_dataset("digits")`: the offline TFDS builder and the train/eval pipelines."""

import collections
import itertools
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from scenic_eqx.data import Dataset, get_dataset, list_datasets


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A TFDS data dir where `digits` is generated once for this module."""
    path = str(tmp_path_factory.mktemp("tfds"))
    get_dataset("digits", batch_size=1, data_dir=path)
    return path


@pytest.fixture(scope="module")
def splits(data_dir):
    """The whole `train` and `test` splits as read back from TFDS: {split: (images, labels)}."""
    import tensorflow_datasets as tfds

    from scenic_eqx.data import _digits

    builder = _digits.Digits(data_dir=data_dir)
    out = {}
    for split in ("train", "test"):
        ds = builder.as_dataset(split=split, batch_size=-1)
        arrays = tfds.as_numpy(ds)
        out[split] = (arrays["image"], arrays["label"])
    return out


def _examples(batches):
    """The real examples of `batches` as hashable (image bytes, label) pairs."""
    out = []
    for batch in batches:
        for inputs, label, mask in zip(batch["inputs"], batch["label"], batch["batch_mask"]):
            if mask == 1.0:
                out.append((np.round(inputs * 255).astype(np.uint8).tobytes(), int(label)))
    return out


def _split_examples(images, labels):
    return [(image.tobytes(), int(label)) for image, label in zip(images, labels)]


def test_meta_data(data_dir):
    ds = get_dataset("digits", batch_size=4, data_dir=data_dir)
    assert isinstance(ds, Dataset)
    assert ds.meta_data == {
        "num_classes": 10,
        "input_shape": (-1, 8, 8, 1),
        "input_dtype": np.float32,
        "num_train_examples": 1437,
        "num_eval_examples": 360,
        "target_is_onehot": False,
        "dataset_name": "digits",
        "valid_source": "test",
    }
    assert "digits" in list_datasets()


def test_split_is_fixed_disjoint_and_from_sklearn(splits):
    (train_images, train_labels), (test_images, test_labels) = splits["train"], splits["test"]
    assert train_images.shape == (1437, 8, 8, 1) and test_images.shape == (360, 8, 8, 1)
    assert train_images.dtype == np.uint8
    # Every class in both splits; test class counts are those of the seed-0 split.
    np.testing.assert_array_equal(np.bincount(test_labels), [29, 38, 33, 40, 33, 39, 32, 42, 41, 33])
    assert np.bincount(train_labels).min() > 100
    # No test image in train (scikit-learn's 1,797 images are all distinct).
    train = set(_split_examples(train_images, train_labels))
    test = set(_split_examples(test_images, test_labels))
    assert len(train) == 1437 and len(test) == 360 and not train & test
    # Exactly scikit-learn's images, 0..16 scaled by 16 (and 256 clipped to 255), at
    # the fixed indices.
    digits = load_digits()
    expected = np.minimum(digits.images * 16, 255).astype(np.uint8)[..., None]
    from scenic_eqx.data._digits import split_indices

    train_indices, test_indices = split_indices(1797)
    np.testing.assert_array_equal(test_indices[:8], [2, 12, 13, 20, 28, 38, 44, 53])
    assert test_indices.sum() == 339627
    assert test == set(_split_examples(expected[test_indices], digits.target[test_indices]))
    assert train == set(_split_examples(expected[train_indices], digits.target[train_indices]))
    assert test_images.max() == 255 and 240 in np.unique(test_images)


def test_train_batches(data_dir):
    ds = get_dataset("digits", batch_size=32, data_dir=data_dir)
    for batch in itertools.islice(ds.train_iter, 3):
        assert set(batch) == {"inputs", "label", "batch_mask"}
        assert batch["inputs"].shape == (32, 8, 8, 1) and batch["inputs"].dtype == np.float32
        assert batch["label"].shape == (32,) and batch["label"].dtype == np.int32
        assert batch["batch_mask"].dtype == np.float32
        np.testing.assert_array_equal(batch["batch_mask"], np.ones(32))
        assert 0.0 <= batch["inputs"].min() and batch["inputs"].max() <= 1.0
        assert set(np.unique(batch["label"])) <= set(range(10))
    # It never runs out: many epochs of 1,437 examples.
    assert sum(1 for _ in itertools.islice(ds.train_iter, 200)) == 200


def test_eval_pass_counts_every_test_example_once(data_dir, splits):
    ds = get_dataset("digits", batch_size=4, eval_batch_size=7, data_dir=data_dir)
    batches = list(ds.valid_iter)
    assert len(batches) == len(ds.valid_iter) == 52  # ceil(360 / 7)
    for batch in batches:
        assert batch["inputs"].shape == (7, 8, 8, 1) and batch["label"].shape == (7,)
        assert batch["batch_mask"].dtype == np.float32
    np.testing.assert_array_equal(batches[-1]["batch_mask"], [1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(batches[-1]["inputs"][3:], 0.0)
    np.testing.assert_array_equal(batches[-1]["label"][3:], 0)
    assert sum(b["batch_mask"].sum() for b in batches) == 360
    assert collections.Counter(_examples(batches)) == collections.Counter(_split_examples(*splits["test"]))
    # No separate validation split: `test_iter` is the same pass.
    assert _examples(ds.test_iter) == _examples(batches)


def test_eval_is_reiterable(data_dir):
    ds = get_dataset("digits", batch_size=4, eval_batch_size=64, data_dir=data_dir)
    first, second = list(ds.valid_iter), list(ds.valid_iter)
    assert len(first) == len(second) == 6
    for a, b in zip(first, second):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_eval_batch_size_defaults_to_batch_size(data_dir):
    ds = get_dataset("digits", batch_size=100, data_dir=data_dir)
    assert [b["label"].shape[0] for b in ds.test_iter] == [100] * 4


def _first_batches(seed, data_dir, n=5):
    ds = get_dataset("digits", batch_size=16, shuffle_seed=seed, data_dir=data_dir)
    return list(itertools.islice(ds.train_iter, n))


def test_same_seed_same_batches_other_seed_other_order(data_dir):
    a, b, c = (_first_batches(seed, data_dir) for seed in (0, 0, 1))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["inputs"], y["inputs"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert not np.array_equal(np.stack([x["label"] for x in a]), np.stack([x["label"] for x in c]))


def test_two_hosts_split_the_train_epoch(data_dir, splits):
    per_host = []
    for process_index in range(2):
        ds = get_dataset(
            "digits",
            batch_size=359,
            data_dir=data_dir,
            process_index=process_index,
            process_count=2,
            shuffle_buffer_size=1,  # no shuffling: the first 718 examples are one epoch
        )
        per_host.append(_examples(itertools.islice(ds.train_iter, 2)))
    host0, host1 = map(set, per_host)
    assert len(host0) == len(host1) == 718  # 1,437 // 2; the remainder is dropped
    assert not host0 & host1
    assert host0 | host1 < set(_split_examples(*splits["train"]))


def test_hosts_share_the_eval_split_in_equal_steps(data_dir, splits):
    import tensorflow_datasets as tfds

    from scenic_eqx.data import _pipeline

    builder = tfds.builder("digits", data_dir=data_dir)
    # 360 over 7 hosts: shares of 52 and 51; every host runs 1 step of 52.
    examples, steps = [], set()
    for process_index in range(7):
        batches = _pipeline.eval_batches(
            builder, "test", batch_size=52, process_index=process_index, process_count=7
        )
        steps.add(len(batches))
        real = _examples(batches)
        assert len(real) in (51, 52)
        examples += real
    assert steps == {1}
    assert collections.Counter(examples) == collections.Counter(_split_examples(*splits["test"]))


def test_tfds_data_dir_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    get_dataset("digits", batch_size=2)
    assert (tmp_path / "digits" / "1.0.0" / "dataset_info.json").exists()


def test_unknown_name_lists_known_and_close_names():
    # Projects tested in the same process may register close names too ('digit_captions').
    match = r"Unknown dataset `name` \(='digit'\)\. Did you mean 'digits'.*\? Known datasets: .*digits"
    with pytest.raises(ValueError, match=match):
        get_dataset("digit", batch_size=2)


def test_not_prepared_catalogue_dataset_is_not_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'cifar10' is not prepared in .*tfds build cifar10"):
        get_dataset("cifar10", batch_size=2, data_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, r"`batch_size` \(=0\) must be a positive integer"),
        ({"batch_size": 2, "eval_batch_size": -1}, r"`eval_batch_size` \(=-1\) must be a positive"),
        ({"batch_size": 2, "process_index": 2, "process_count": 2}, r"`process_index` \(=2\)"),
        ({"batch_size": 2, "process_index": 0, "process_count": 0}, r"`process_count` \(=0\)"),
        ({"batch_size": 2, "shuffle_buffer_size": 0}, r"`shuffle_buffer_size` \(=0\)"),
    ],
)
def test_bad_arguments(data_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_dataset("digits", data_dir=data_dir, **kwargs)


def test_unknown_option():
    match = r"Unknown option\(s\) shufle_buffer_size .*known: .*shuffle_buffer_size"
    with pytest.raises(TypeError, match=match):
        get_dataset("digits", batch_size=2, shufle_buffer_size=10)


def test_host_without_train_examples(data_dir):
    match = r"no examples for `process_index` \(=0\) of `process_count` \(=1500\)"
    with pytest.raises(ValueError, match=match):
        get_dataset("digits", batch_size=2, data_dir=data_dir, process_index=0, process_count=1500)


def test_eval_needs_fixed_shapes(data_dir):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from scenic_eqx.data import _pipeline

    builder = tfds.builder("digits", data_dir=data_dir)

    def ragged(example):  # as many pixels as the label says: no fixed shape
        pixels = tf.reshape(example["image"], [-1])[: example["label"]]
        return {"inputs": pixels, "label": example["label"]}

    with pytest.raises(ValueError, match=r"fixed shapes.*'inputs' has shape \(None,\)"):
        _pipeline.eval_batches(builder, "test", batch_size=4, preprocess_fn=ragged)


def test_import_does_not_import_tensorflow():
    code = "import scenic_eqx.data, sys; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
