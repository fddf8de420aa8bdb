"""`from_arrays` / `get_dataset("arrays")`: in-memory arrays and `.npz` files as a `Dataset`."""

import collections
import itertools
import subprocess
import sys

import numpy as np
import pytest

from scenic_eqx.data import Dataset, from_arrays, get_dataset

HOSTS = {"process_index": 0, "process_count": 1}


def _splits(num_train=50, num_test=21):
    rng = np.random.default_rng(0)
    # Example i of a split is all i: identifiable after batching and scaling.
    x_train = np.broadcast_to(np.arange(num_train, dtype=np.uint8)[:, None, None, None], (num_train, 4, 3, 1))
    y_train = rng.integers(0, 3, num_train)
    x_test = np.broadcast_to(np.arange(num_test, dtype=np.uint8)[:, None, None, None], (num_test, 4, 3, 1))
    y_test = rng.integers(0, 3, num_test)
    return (x_train, y_train), (x_test, y_test)


def _ids(batches):
    """`(example id, label)` of each real example, the id read back from its pixels."""
    out = []
    for batch in batches:
        for inputs, label, mask in zip(batch["inputs"], batch["label"], batch["batch_mask"]):
            if mask == 1.0:
                out.append((int(round(inputs[0, 0, 0] * 255)), int(label)))
    return out


def test_meta_data_and_batch_contract():
    train, test = _splits()
    ds = from_arrays(train, test, batch_size=8, eval_batch_size=16, **HOSTS)
    assert isinstance(ds, Dataset)
    assert ds.meta_data == {
        "num_classes": 3,
        "input_shape": (-1, 4, 3, 1),
        "input_dtype": np.float32,
        "label_shape": (),
        "num_train_examples": 50,
        "num_eval_examples": 21,
        "target_is_onehot": False,
        "dataset_name": "arrays",
        "valid_source": "test",
    }
    batch = next(ds.train_iter)
    assert set(batch) == {"inputs", "label", "batch_mask"}
    assert batch["inputs"].shape == (8, 4, 3, 1) and batch["inputs"].dtype == np.float32
    assert batch["label"].dtype == np.int32 and batch["batch_mask"].dtype == np.float32
    np.testing.assert_array_equal(batch["batch_mask"], np.ones(8))
    # uint8 is scaled to [0, 1]: example i holds i / 255 everywhere.
    ids = np.round(batch["inputs"][:, 0, 0, 0] * 255).astype(int)
    np.testing.assert_allclose(
        batch["inputs"], (ids / 255)[:, None, None, None] * np.ones((4, 3, 1)), rtol=1e-6
    )
    np.testing.assert_array_equal(batch["label"], train[1][ids])


def test_train_epochs_cover_every_example_and_seed_fixes_the_order():
    train, test = _splits()
    ds = from_arrays(train, test, batch_size=10, **HOSTS)
    epochs = _ids(itertools.islice(ds.train_iter, 10))  # 100 examples: 2 epochs of 50
    assert sorted(epochs[:50]) == sorted(epochs[50:]) == sorted(zip(range(50), train[1].tolist()))
    assert epochs[:50] != epochs[50:]  # a new order each epoch
    again = from_arrays(train, test, batch_size=10, **HOSTS)
    other = from_arrays(train, test, batch_size=10, shuffle_seed=1, **HOSTS)
    assert _ids(itertools.islice(again.train_iter, 10)) == epochs
    assert _ids(itertools.islice(other.train_iter, 10)) != epochs


def test_eval_pass_counts_every_example_once_and_is_reiterable():
    train, test = _splits()
    ds = from_arrays(train, test, batch_size=8, eval_batch_size=8, **HOSTS)
    batches = list(ds.test_iter)
    assert len(batches) == len(ds.test_iter) == 3  # ceil(21 / 8)
    np.testing.assert_array_equal(batches[-1]["batch_mask"], [1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(batches[-1]["inputs"][5:], 0.0)
    assert _ids(batches) == list(zip(range(21), test[1].tolist()))
    assert _ids(ds.valid_iter) == _ids(ds.test_iter) == _ids(batches)


def test_float_inputs_are_kept_and_num_classes_can_be_larger():
    (x, y), _ = _splits()
    x = np.linspace(-2, 2, x.size).reshape(x.shape)  # float64, outside [0, 1]
    ds = from_arrays((x, y), (x[:8], y[:8]), batch_size=8, num_classes=5, **HOSTS)
    assert ds.meta_data["num_classes"] == 5
    (batch,) = list(ds.test_iter)
    assert batch["inputs"].dtype == np.float32
    np.testing.assert_allclose(batch["inputs"], x[:8], rtol=1e-6)


def test_two_hosts_take_disjoint_equal_shares():
    train, test = _splits(num_train=51, num_test=21)
    train_ids, test_ids = [], []
    for process_index in range(2):
        ds = from_arrays(
            train, test, batch_size=25, eval_batch_size=4, process_index=process_index, process_count=2
        )
        train_ids.append({i for i, _ in _ids(itertools.islice(ds.train_iter, 1))})
        test_ids.append(_ids(ds.test_iter))
        assert len(ds.test_iter) == 3  # both hosts run ceil(11 / 4) steps
    assert len(train_ids[0]) == len(train_ids[1]) == 25 and not train_ids[0] & train_ids[1]
    assert collections.Counter(test_ids[0] + test_ids[1]) == collections.Counter(
        zip(range(21), test[1].tolist())
    )


def test_npz_file_is_the_same_dataset(tmp_path):
    (x_train, y_train), (x_test, y_test) = _splits()
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    from_npz = get_dataset("arrays", npz=str(path), batch_size=8, **HOSTS)
    direct = from_arrays((x_train, y_train), (x_test, y_test), batch_size=8, **HOSTS)
    assert from_npz.meta_data == direct.meta_data
    assert _ids(itertools.islice(from_npz.train_iter, 4)) == _ids(itertools.islice(direct.train_iter, 4))
    assert _ids(from_npz.test_iter) == _ids(direct.test_iter)


def test_npz_errors(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((2, 1)), y_train=np.zeros(2, int))
    with pytest.raises(
        ValueError, match=r"has no array\(s\) x_test, y_test; it must hold x_train.*it holds x_train, y_train"
    ):
        get_dataset("arrays", npz=str(path), batch_size=2, **HOSTS)
    with pytest.raises(FileNotFoundError, match=r"`npz` \(=.*missing.npz'\) is not a file"):
        get_dataset("arrays", npz=str(tmp_path / "missing.npz"), batch_size=2, **HOSTS)
    train, test = _splits()
    with pytest.raises(ValueError, match=r"Give either `npz` \(=.*\) or `train` and `test`, not both"):
        get_dataset("arrays", npz=str(path), train=train, batch_size=2, **HOSTS)


@pytest.mark.parametrize(
    "train, test, extra, match",
    [
        (None, "ok", {}, r"needs `train` and `test` .* or `npz`; got train=None, test=set"),
        ("pair", "ok", {}, r"`train` must be a pair `\(inputs, labels\)`. Received: str"),
        (
            (np.zeros((3, 2)), np.zeros(2, int)),
            "ok",
            {},
            r"`train` labels must have one entry per example: a leading size of 3 .* Received: shape \(2,\)",
        ),
        (
            (np.zeros((2, 2), np.int32), np.zeros(2, int)),
            "ok",
            {},
            r"`train` inputs must be uint8 or floating. Received: dtype int32",
        ),
        (
            (np.zeros((2, 2)), np.array(["a", "b"])),
            "ok",
            {},
            r"`train` labels must be integer \(classes\), floating \(targets\) or bool. Received: dtype <U1",
        ),
        (
            (np.zeros((2, 2)), np.zeros(2)),
            "ok",
            {},
            r"`test` labels must have the per-example shapes and kinds .* of the `train` labels, \(\(\), 'floating'\). Received: \(\(\), 'integer'\)",
        ),
        (
            (np.zeros((2, 3)), np.zeros(2, int)),
            "ok",
            {},
            r"must share their example shape; got \(3,\) and \(2,\)",
        ),
        (
            "ok",
            (np.zeros((2, 2)), np.array([0, -1])),
            {},
            r"`test` labels must lie in \[0, `num_classes` \(=2\)\). Received: labels from -1 to 0",
        ),
        (
            "ok",
            "ok",
            {"num_classes": 1},
            r"`train` labels must lie in \[0, `num_classes` \(=1\)\). Received: labels from 0 to 1",
        ),
        ("ok", "ok", {"num_classes": 0}, r"`num_classes` \(=0\) must be a positive integer"),
    ],
)
def test_bad_arrays(train, test, extra, match):
    ok = (np.zeros((2, 2)), np.array([0, 1]))
    train = ok if isinstance(train, str) and train == "ok" else train
    test = ok if isinstance(test, str) and test == "ok" else test
    with pytest.raises(ValueError, match=match):
        get_dataset("arrays", train=train, test=test, batch_size=2, **extra, **HOSTS)


def test_unknown_option_lists_the_arrays_arguments():
    ok = (np.zeros((2, 2)), np.array([0, 1]))
    match = r"Unknown option\(s\) shuffle_buffer_size for `get_dataset` of 'arrays'; known: train, test, npz, num_classes"
    with pytest.raises(TypeError, match=match):
        from_arrays(ok, ok, batch_size=2, shuffle_buffer_size=10)


def test_arrays_do_not_import_tensorflow():
    code = (
        "import numpy as np, sys; from scenic_eqx import data; ok = (np.zeros((8, 2)), np.arange(8) % 2); "
        "ds = data.from_arrays(ok, ok, batch_size=4, process_index=0, process_count=1); next(ds.train_iter); "
        "list(ds.test_iter); assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
