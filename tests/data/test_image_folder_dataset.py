"""`get_dataset("image_folder")`: images in `root/<split>/<class>/` read through TFDS's folder builder."""

import collections
import itertools

import numpy as np
import pytest
from PIL import Image

from scenic_eqx.data import get_dataset

HOSTS = {"process_index": 0, "process_count": 1}
# Each class has its own colour, so a decoded image tells its class; sizes differ.
COLOURS = {"cat": (250, 10, 10), "dog": (10, 250, 10), "emu": (10, 10, 250)}


def _write(root, split, counts, fmt="png"):
    for class_index, (name, colour) in enumerate(COLOURS.items()):
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(counts[class_index]):
            image = np.broadcast_to(np.array(colour, np.uint8), (10 + i, 7 + 2 * i, 3))
            Image.fromarray(np.ascontiguousarray(image)).save(folder / f"{i}.{fmt}", quality=95)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    _write(root, "train", (5, 4, 3))
    _write(root, "test", (3, 2, 2), fmt="jpg")
    return root


def _classes(batches):
    """The class of each real example, from its colour, and its label."""
    out = []
    for batch in batches:
        for inputs, label, mask in zip(batch["inputs"], batch["label"], batch["batch_mask"]):
            if mask == 1.0:
                colour = int(np.argmax(inputs.mean(axis=(0, 1))))
                out.append((colour, int(label)))
    return out


def test_meta_data_labels_and_resizing(root):
    ds = get_dataset(
        "image_folder", root=str(root), image_size=(6, 5), batch_size=4, eval_batch_size=8, **HOSTS
    )
    assert ds.meta_data == {
        "num_classes": 3,
        "class_names": ("cat", "dog", "emu"),
        "input_shape": (-1, 6, 5, 3),
        "input_dtype": np.float32,
        "num_train_examples": 12,
        "num_eval_examples": 7,
        "target_is_onehot": False,
        "dataset_name": "image_folder",
        "valid_source": "test",
    }
    batch = next(ds.train_iter)
    assert batch["inputs"].shape == (4, 6, 5, 3) and batch["inputs"].dtype == np.float32
    assert batch["label"].dtype == np.int32
    # Plain colour images stay their colour, scaled to [0, 1], whatever their size.
    for inputs, label in zip(batch["inputs"], batch["label"]):
        expected = np.array(list(COLOURS.values())[label]) / 255
        np.testing.assert_allclose(inputs, np.broadcast_to(expected, inputs.shape), atol=1e-5)
    # Label i is the i-th sorted class folder: colour i.
    train = _classes(itertools.islice(ds.train_iter, 3))
    assert all(colour == label for colour, label in train)


def test_eval_counts_every_image_once(root):
    ds = get_dataset("image_folder", root=str(root), image_size=4, batch_size=4, eval_batch_size=4, **HOSTS)
    batches = list(ds.test_iter)
    assert len(batches) == len(ds.test_iter) == 2
    np.testing.assert_array_equal(batches[1]["batch_mask"], [1, 1, 1, 0])
    # JPEG colours are close but not exact: the channel that is bright tells the class.
    assert collections.Counter(_classes(batches)) == {(0, 0): 3, (1, 1): 2, (2, 2): 2}
    assert _classes(ds.valid_iter) == _classes(batches)


def test_train_epoch_and_two_hosts(root):
    shares = []
    for process_index in range(2):
        ds = get_dataset(
            "image_folder",
            root=str(root),
            image_size=4,
            batch_size=6,
            process_index=process_index,
            process_count=2,
            shuffle_buffer_size=1,
        )
        # No shuffling: one batch is this host's 6 images, one epoch.
        shares.append(collections.Counter(_classes(itertools.islice(ds.train_iter, 1))))
    assert shares[0] + shares[1] == {(0, 0): 5, (1, 1): 4, (2, 2): 3}


def test_grey_channels(root):
    ds = get_dataset("image_folder", root=str(root), image_size=4, channels=1, batch_size=4, **HOSTS)
    batch = next(ds.train_iter)
    assert batch["inputs"].shape == (4, 4, 4, 1)
    # ITU-R 601 luma of the class colour.
    luma = {
        0: 0.299 * 250 + 0.587 * 10 + 0.114 * 10,
        1: 0.299 * 10 + 0.587 * 250 + 0.114 * 10,
        2: 0.299 * 10 + 0.587 * 10 + 0.114 * 250,
    }
    for inputs, label in zip(batch["inputs"], batch["label"]):
        np.testing.assert_allclose(inputs, luma[int(label)] / 255, atol=2 / 255)


def test_missing_root_split_and_classes(tmp_path, root):
    with pytest.raises(FileNotFoundError, match=r"`root` \(=.*nowhere'\) is not a directory"):
        get_dataset("image_folder", root=str(tmp_path / "nowhere"), image_size=4, batch_size=2, **HOSTS)
    with pytest.raises(FileNotFoundError, match=r"has no split folder 'valid' .*found: \['test', 'train'\]"):
        get_dataset("image_folder", root=str(root), image_size=4, test_split="valid", batch_size=2, **HOSTS)
    (tmp_path / "flat" / "train").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "flat" / "train" / "a.png")
    with pytest.raises(
        FileNotFoundError, match=r"has no split folder 'train' holding class folders .*found: none"
    ):
        get_dataset("image_folder", root=str(tmp_path / "flat"), image_size=4, batch_size=2, **HOSTS)
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"Split folder '.*train' has no images"):
        get_dataset("image_folder", root=str(tmp_path / "empty"), image_size=4, batch_size=2, **HOSTS)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"image_size": (4, 0)},
            r"`image_size` \(=\(4, 0\)\) must be a positive int or a \(height, width\) pair",
        ),
        ({"image_size": (4, 5, 6)}, r"`image_size` \(=\(4, 5, 6\)\) must be a positive int"),
        ({"image_size": 4, "channels": 4}, r"`channels` \(=4\) must be 1 or 3"),
    ],
)
def test_bad_arguments(root, kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_dataset("image_folder", root=str(root), batch_size=2, **kwargs, **HOSTS)


def test_too_many_hosts(root):
    with pytest.raises(ValueError, match=r"'train' has 12 images: none for each of `process_count` \(=13\)"):
        get_dataset(
            "image_folder", root=str(root), image_size=4, batch_size=2, process_index=0, process_count=13
        )


def test_unknown_option_lists_the_folder_arguments(root):
    with pytest.raises(
        TypeError,
        match=r"Unknown option\(s\) img_size for `get_dataset` of 'image_folder'; known: root, image_size",
    ):
        get_dataset("image_folder", root=str(root), img_size=4, batch_size=2, **HOSTS)
