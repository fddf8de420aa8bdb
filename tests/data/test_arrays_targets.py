"""`from_arrays` with float, dense and dict labels; `pad_batch` on label pytrees."""

import itertools

import numpy as np
import pytest

from scenic_eqx.data import from_arrays, pad_batch

HOSTS = {"process_index": 0, "process_count": 1}


def _inputs(num_examples):
    """Example i is all i (as float): identifiable after batching."""
    return np.broadcast_to(np.arange(num_examples, dtype=np.float32)[:, None], (num_examples, 3)).copy()


def _ids(batch):
    return batch["inputs"][:, 0].round().astype(int)


@pytest.mark.parametrize(
    "label_shape, dtype, batch_dtype",
    [
        ((), np.float64, np.float32),  # regression, one value
        ((2,), np.float32, np.float32),  # regression, d values
        ((4, 5), np.int64, np.int32),  # segmentation masks [n, height, width]
        ((4, 5, 3), np.float16, np.float32),  # dense float maps [n, height, width, channels]
        ((6,), bool, bool),  # flags
    ],
)
def test_targets_of_any_shape_batch_and_pad(label_shape, dtype, batch_dtype):
    rng = np.random.default_rng(0)

    def split(n):
        return _inputs(n), (rng.normal(size=(n, *label_shape)) * 3).astype(dtype)

    train, test = split(20), split(11)
    ds = from_arrays(train, test, batch_size=8, eval_batch_size=4, **HOSTS)
    assert ds.meta_data["label_shape"] == label_shape
    assert "num_classes" not in ds.meta_data  # only integer labels [n] infer it
    for batch in itertools.islice(ds.train_iter, 3):
        assert batch["label"].shape == (8, *label_shape) and batch["label"].dtype == batch_dtype
        np.testing.assert_array_equal(batch["label"], train[1][_ids(batch)].astype(batch_dtype))
    batches = list(ds.test_iter)
    assert len(batches) == 3  # ceil(11 / 4)
    last = batches[-1]
    np.testing.assert_array_equal(last["batch_mask"], [1, 1, 1, 0])
    assert last["label"].shape == (4, *label_shape) and last["label"].dtype == batch_dtype
    assert not last["label"][3].any()  # the padding row is zeros
    labels = np.concatenate([b["label"][b["batch_mask"] > 0] for b in batches])
    np.testing.assert_array_equal(labels, test[1].astype(batch_dtype))


def test_dict_labels_batch_as_dicts_and_pad_every_leaf():
    rng = np.random.default_rng(1)

    def split(n):
        labels = {
            "class": rng.integers(0, 4, n),
            "box": rng.uniform(size=(n, 4)),
            "extra": {"mask": rng.integers(0, 2, (n, 2, 2))},
        }
        return _inputs(n), labels

    train, test = split(24), split(10)
    ds = from_arrays(train, test, batch_size=8, eval_batch_size=4, **HOSTS)
    assert "num_classes" not in ds.meta_data  # a dict: only a given num_classes is recorded
    assert ds.meta_data["label_shape"] == {"class": (), "box": (4,), "extra": {"mask": (2, 2)}}
    batch = next(ds.train_iter)
    assert set(batch) == {"inputs", "label", "batch_mask"}
    label, ids = batch["label"], _ids(batch)
    assert set(label) == {"class", "box", "extra"}
    assert label["class"].dtype == np.int32 and label["box"].dtype == np.float32
    np.testing.assert_array_equal(label["class"], train[1]["class"][ids])
    np.testing.assert_allclose(label["box"], train[1]["box"][ids], rtol=1e-6)
    np.testing.assert_array_equal(label["extra"]["mask"], train[1]["extra"]["mask"][ids])
    *_, last = ds.valid_iter  # no validation split: the test split
    np.testing.assert_array_equal(last["batch_mask"], [1, 1, 0, 0])
    assert last["label"]["box"].shape == (4, 4) and last["label"]["extra"]["mask"].shape == (4, 2, 2)
    np.testing.assert_array_equal(last["label"]["class"], [*test[1]["class"][8:], 0, 0])
    np.testing.assert_array_equal(last["label"]["box"][2:], 0.0)
    np.testing.assert_array_equal(last["label"]["extra"]["mask"][2:], 0)


def test_num_classes_only_where_it_means_something():
    rng = np.random.default_rng(2)
    x = _inputs(12)
    classes = rng.integers(0, 5, 12)
    classes[3] = 6  # the largest label: 7 classes inferred
    assert from_arrays((x, classes), (x, classes), batch_size=4, **HOSTS).meta_data["num_classes"] == 7
    masks = np.full((12, 2, 2), 255)  # an ignore value: not read as 256 classes
    masks[:, 0, 0] = classes
    dense = from_arrays((x, masks), (x, masks), batch_size=4, **HOSTS)
    assert "num_classes" not in dense.meta_data
    given = from_arrays((x, masks), (x, masks), batch_size=4, num_classes=7, **HOSTS)
    assert given.meta_data["num_classes"] == 7
    labels = {"class": classes, "box": rng.uniform(size=(12, 4))}
    multi = from_arrays((x, labels), (x, labels), batch_size=4, num_classes=9, **HOSTS)
    assert multi.meta_data["num_classes"] == 9
    with pytest.raises(
        ValueError,
        match=r"`test` labels\['class'\] must lie in \[0, `num_classes` \(=6\)\). Received: labels from 0 to 6",
    ):
        from_arrays((x, {**labels, "class": classes % 6}), (x, labels), batch_size=4, num_classes=6, **HOSTS)
    with pytest.raises(
        ValueError,
        match=r"`num_classes` \(=3\) applies to integer class labels; these labels hold none .* Received: num_classes=3",
    ):
        from_arrays((x, labels["box"]), (x, labels["box"]), batch_size=4, num_classes=3, **HOSTS)


@pytest.mark.parametrize(
    "train_labels, test_labels, match",
    [
        # A label leaf with one example too few names the argument, the leaf and both sizes.
        (
            {"class": np.zeros(9, int), "box": np.zeros((8, 4))},
            None,
            r"`train` labels\['box'\] must have one entry per example: a leading size of 9 \(the number of `train` inputs\). Received: shape \(8, 4\)",
        ),
        (
            np.zeros((9, 2)),
            np.zeros((5, 2)),
            r"`test` labels must have one entry per example: a leading size of 4 \(the number of `test` inputs\). Received: shape \(5, 2\)",
        ),
        (
            np.zeros(9),
            np.float32(1.0),
            r"`test` labels must have one entry per example: a leading size of 4 .* Received: shape \(\)",
        ),
        (
            {},
            None,
            r"`train` labels must be an array or a non-empty dict with string keys. Received: a dict with keys \[\]",
        ),
        ({1: np.zeros(9)}, None, r"with string keys. Received: a dict with keys \[1\]"),
        (
            {"a": np.zeros(9, complex)},
            None,
            r"`train` labels\['a'\] must be integer \(classes\), floating \(targets\) or bool. Received: dtype complex128",
        ),
        (
            {"class": np.zeros(9, int)},
            {"cls": np.zeros(4, int)},
            r"`test` labels must have the per-example shapes and kinds .* of the `train` labels, \{'class': \(\(\), 'integer'\)\}. Received: \{'cls': \(\(\), 'integer'\)\}",
        ),
        (np.zeros((9, 2)), np.zeros((4, 3)), r"Received: \(\(3,\), 'floating'\)"),
    ],
)
def test_bad_labels_name_the_argument(train_labels, test_labels, match):
    x_train, x_test = _inputs(9), _inputs(4)
    test_labels = train_labels if test_labels is None else test_labels
    if isinstance(test_labels, dict) and test_labels is train_labels:
        test_labels = {k: v[:4] for k, v in train_labels.items()}
    with pytest.raises(ValueError, match=match):
        from_arrays((x_train, train_labels), (x_test, test_labels), batch_size=2, **HOSTS)


def test_pad_batch_pads_tuples_and_lists_inside_labels():
    batch = {
        "inputs": np.ones((2, 3), np.float32),
        "label": (np.array([1, 2], np.int32), [np.ones((2, 4), np.float32), np.array([True, True])]),
    }
    padded = pad_batch(batch, 3)
    first, (second, third) = padded["label"]
    np.testing.assert_array_equal(first, [1, 2, 0])
    assert second.shape == (3, 4) and second.dtype == np.float32 and not second[2].any()
    np.testing.assert_array_equal(third, [True, True, False])
    np.testing.assert_array_equal(padded["batch_mask"], [1, 1, 0])
    with pytest.raises(ValueError, match=r"leading size; got leading sizes .*'label/1/0': 1"):
        pad_batch({**batch, "label": (batch["label"][0], [np.ones((1, 4))])}, 3)
    with pytest.raises(ValueError, match=r"`batch` must be a dict of arrays .* Received: tuple"):
        pad_batch((np.ones(2),), 3)
