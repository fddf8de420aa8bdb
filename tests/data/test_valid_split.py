"""A validation split apart from the test split: `valid_fraction`, or `valid` arrays."""

import collections
import itertools

import numpy as np
import pytest

# The TFDS catalogue on fake data, as in test_catalogue.py (fixtures and helpers).
from test_catalogue import _cifar_ids, fake_tfds, metadata_dir  # noqa: F401

from scenic_eqx.data import from_arrays, get_dataset

HOSTS = {"process_index": 0, "process_count": 1}


def _split(num_examples, start=0):
    """Example i holds i in every input and as its float target."""
    ids = np.arange(start, start + num_examples, dtype=np.float32)
    return np.broadcast_to(ids[:, None], (num_examples, 2)).copy(), ids.copy()


def _ids(batches):
    return [int(i) for b in batches for i, m in zip(b["inputs"][:, 0], b["batch_mask"]) if m > 0]


def test_valid_fraction_holds_out_the_tail_of_train():
    train, test = _split(50), _split(21, start=1000)
    ds = from_arrays(train, test, batch_size=8, eval_batch_size=4, valid_fraction=0.2, **HOSTS)
    meta = ds.meta_data
    assert meta["valid_source"] == "train[40:]"
    assert meta["num_train_examples"] == 40 and meta["num_eval_examples"] == 10
    assert _ids(ds.valid_iter) == list(range(40, 50))
    assert _ids(ds.test_iter) == list(range(1000, 1021))
    assert ds.valid_iter is not ds.test_iter
    seen = _ids(itertools.islice(ds.train_iter, 5))  # one epoch of the 40 kept
    assert sorted(seen) == list(range(40))
    # Labels travel with their inputs.
    batch = next(iter(ds.valid_iter))
    np.testing.assert_array_equal(batch["label"], batch["inputs"][:, 0])


def test_fraction_rounds_to_the_nearest_example_and_ignores_the_seed():
    train, test = _split(10), _split(3)
    for seed in (0, 7):
        ds = from_arrays(train, test, batch_size=2, valid_fraction=0.25, shuffle_seed=seed, **HOSTS)
        assert ds.meta_data["valid_source"] == "train[7:]"  # round(2.5) = 3 held out
        assert _ids(ds.valid_iter) == [7, 8, 9]


def test_explicit_valid_arrays():
    train, valid, test = _split(12), _split(5, start=500), _split(3, start=1000)
    ds = from_arrays(train, test, valid=valid, batch_size=4, **HOSTS)
    assert ds.meta_data["valid_source"] == "valid" and ds.meta_data["num_eval_examples"] == 5
    assert _ids(ds.valid_iter) == list(range(500, 505))
    assert _ids(ds.test_iter) == [1000, 1001, 1002]
    assert sorted(_ids(itertools.islice(ds.train_iter, 3))) == list(range(12))


def test_npz_may_hold_a_validation_split(tmp_path):
    (x, y), (xv, yv), (xt, yt) = _split(12), _split(5, start=500), _split(3, start=1000)
    path = tmp_path / "with_valid.npz"
    np.savez(path, x_train=x, y_train=y, x_valid=xv, y_valid=yv, x_test=xt, y_test=yt)
    ds = get_dataset("arrays", npz=str(path), batch_size=4, **HOSTS)
    assert ds.meta_data["valid_source"] == "valid"
    assert _ids(ds.valid_iter) == list(range(500, 505))
    np.savez(path, x_train=x, y_train=y, x_valid=xv, x_test=xt, y_test=yt)
    with pytest.raises(
        ValueError, match=r"holds x_valid alone; a validation split needs both x_valid and y_valid"
    ):
        get_dataset("arrays", npz=str(path), batch_size=4, **HOSTS)


@pytest.mark.parametrize("valid_fraction", [0.0, 1.0, 1.5, -0.1, float("nan"), True, "0.1"])
def test_valid_fraction_outside_the_unit_interval(valid_fraction):
    train = _split(10)
    match = r"`valid_fraction` must be a number in \(0, 1\): .* Received: "
    with pytest.raises(ValueError, match=match):
        from_arrays(train, train, batch_size=2, valid_fraction=valid_fraction, **HOSTS)
    with pytest.raises(ValueError, match=match):  # checked before any TFDS work
        get_dataset("digits", batch_size=2, valid_fraction=valid_fraction, **HOSTS)


@pytest.mark.parametrize(
    "num_train, valid_fraction, match",
    [
        (10, 0.04, r"leaves an empty validation split \(10 kept for training, 0 held out"),
        (3, 0.9, r"leaves an empty training split \(0 kept for training, 3 held out"),
    ],
)
def test_a_fraction_leaving_an_empty_split_gives_the_sizes(num_train, valid_fraction, match):
    train = _split(num_train)
    full = rf"`valid_fraction` \(={valid_fraction}\) of the {num_train} examples of 'train' " + match
    with pytest.raises(ValueError, match=full):
        from_arrays(train, train, batch_size=2, valid_fraction=valid_fraction, **HOSTS)


def test_valid_arrays_and_fraction_together_are_an_error():
    train = _split(10)
    with pytest.raises(
        ValueError, match=r"Give either a validation split .* or `valid_fraction` \(=0.2\), not both"
    ):
        from_arrays(train, train, valid=train, batch_size=2, valid_fraction=0.2, **HOSTS)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """A TFDS data dir where `digits` is generated once for this module."""
    path = str(tmp_path_factory.mktemp("tfds"))
    get_dataset("digits", batch_size=1, data_dir=path, **HOSTS)
    return path


def _examples(batches):
    """The real examples as hashable (image bytes, label) pairs."""
    return [
        (np.round(x * 255).astype(np.uint8).tobytes(), int(y))
        for b in batches
        for x, y, m in zip(b["inputs"], b["label"], b["batch_mask"])
        if m > 0
    ]


def test_digits_valid_fraction_holds_out_part_of_train(digits_dir):
    import tensorflow_datasets as tfds

    from scenic_eqx.data import _digits

    # The train split in its stored order, as the pipelines read it.
    stored = tfds.as_numpy(_digits.Digits(data_dir=digits_dir).as_dataset(split="train", batch_size=-1))
    order = [(image.tobytes(), int(label)) for image, label in zip(stored["image"], stored["label"])]

    # A shuffle buffer of one: the first 1,293 examples are exactly one epoch.
    ds = get_dataset(
        "digits",
        batch_size=431,
        eval_batch_size=144,
        data_dir=digits_dir,
        valid_fraction=0.1,
        shuffle_buffer_size=1,
        **HOSTS,
    )
    meta = ds.meta_data
    assert meta["valid_source"] == "train[1293:]"
    assert meta["num_train_examples"] == 1293 and meta["num_eval_examples"] == 144
    valid = _examples(ds.valid_iter)
    assert valid == order[1293:]  # the last 10% of train, in order
    epoch = _examples(itertools.islice(ds.train_iter, 3))  # 3 x 431 = one epoch
    assert collections.Counter(epoch) == collections.Counter(order[:1293])
    assert not set(epoch) & set(valid)  # no image is in both
    assert len(_examples(ds.test_iter)) == 360  # the test split is untouched

    today = get_dataset("digits", batch_size=8, eval_batch_size=120, data_dir=digits_dir, **HOSTS)
    assert today.valid_iter is today.test_iter and today.meta_data["valid_source"] == "test"
    assert today.meta_data["num_train_examples"] == 1437 and today.meta_data["num_eval_examples"] == 360
    assert _examples(today.valid_iter) == _examples(ds.test_iter)

    with pytest.raises(
        ValueError,
        match=r"`valid_fraction` \(=0.0001\) of the 1437 examples of 'train' leaves an empty validation split",
    ):
        get_dataset("digits", batch_size=8, data_dir=digits_dir, valid_fraction=1e-4, **HOSTS)


def test_catalogue_valid_fraction_is_a_slice_of_train(fake_tfds):  # noqa: F811
    ds = get_dataset(
        "cifar10",
        batch_size=10,
        eval_batch_size=5,
        valid_fraction=0.2,
        shuffle_buffer_size=1,
        augment=False,
        **HOSTS,
    )
    assert ds.meta_data["valid_source"] == "train[40:]"
    assert ds.meta_data["num_train_examples"] == 40 and ds.meta_data["num_eval_examples"] == 10
    assert sorted(i for b in ds.valid_iter for i in _cifar_ids(b)) == list(range(40, 50))
    assert sorted(i for b in ds.test_iter for i in _cifar_ids(b)) == list(range(1000, 1023))
    epoch = [i for b in itertools.islice(ds.train_iter, 4) for i in _cifar_ids(b)]
    assert sorted(epoch) == list(range(40))
    default = get_dataset("cifar10", batch_size=10, shuffle_buffer_size=1, **HOSTS)
    assert default.meta_data["valid_source"] == "test" and default.valid_iter is default.test_iter

    with pytest.raises(
        ValueError,
        match=r"Give either `valid_split` \(='test\[:5\]'\) or `valid_fraction` \(=0.2\), not both",
    ):
        get_dataset("cifar10", batch_size=10, valid_split="test[:5]", valid_fraction=0.2, **HOSTS)
    with pytest.raises(
        ValueError,
        match=r"must then be a split name such as 'train', not a slice .* Received: a training split 'train\[:30\]'",
    ):
        get_dataset("cifar10", batch_size=10, train_split="train[:30]", valid_fraction=0.2, **HOSTS)


def test_a_dataset_that_cannot_hold_out_says_so():
    with pytest.raises(
        TypeError,
        match=r"Dataset 'video_tfrecord' cannot hold out `valid_fraction` of its training split; its options are: .* Received: valid_fraction=0.1",
    ):
        get_dataset("video_tfrecord", batch_size=2, valid_fraction=0.1, **HOSTS)


@pytest.mark.parametrize("name", ["synthetic_segmentation", "synthetic_detection"])
def test_synthetic_datasets_hold_out_generated_training_examples(name):
    options = {"image_size": 8, "num_train_examples": 20, "num_test_examples": 6, "batch_size": 4, **HOSTS}
    whole = get_dataset(name, **options)
    ds = get_dataset(name, valid_fraction=0.25, **options)
    assert ds.meta_data["valid_source"] == "train[15:]" and whole.meta_data["valid_source"] == "test"
    assert ds.meta_data["num_train_examples"] == 15 and ds.meta_data["num_eval_examples"] == 5
    # The held-out images are the last 5 generated for training, not test images.
    train_pass = next(get_dataset(name, **{**options, "batch_size": 20}).train_iter)["inputs"]
    valid = np.concatenate([b["inputs"][b["batch_mask"] > 0] for b in ds.valid_iter])
    test = np.concatenate([b["inputs"][b["batch_mask"] > 0] for b in ds.test_iter])
    assert valid.shape[0] == 5 and test.shape[0] == 6
    kept = np.concatenate([b["inputs"] for b in itertools.islice(ds.train_iter, 15)])  # 4 epochs
    held = {x.tobytes() for x in valid}
    assert held <= {x.tobytes() for x in train_pass} and not held & {x.tobytes() for x in kept}
    assert not held & {x.tobytes() for x in test}


def test_image_folder_holds_out_the_tail_of_its_train_folder(tmp_path):
    from test_image_folder_dataset import _classes, _write

    _write(tmp_path, "train", (5, 4, 3))
    _write(tmp_path, "test", (3, 2, 2), fmt="jpg")
    options = {"root": str(tmp_path), "image_size": (6, 5), "batch_size": 3, "eval_batch_size": 4, **HOSTS}
    whole = get_dataset("image_folder", shuffle_buffer_size=1, **options)
    ds = get_dataset("image_folder", valid_fraction=0.25, shuffle_buffer_size=1, **options)
    assert ds.meta_data["valid_source"] == "train[9:]"
    assert ds.meta_data["num_train_examples"] == 9 and ds.meta_data["num_eval_examples"] == 3
    order = _classes(itertools.islice(whole.train_iter, 4))  # the 12 images in their fixed order
    assert _classes(ds.valid_iter) == order[9:]
    assert sorted(_classes(itertools.islice(ds.train_iter, 3))) == sorted(order[:9])
    assert len(_classes(ds.test_iter)) == 7
