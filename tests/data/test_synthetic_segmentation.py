"""`get_dataset("synthetic_segmentation")`: generated shapes, exact masks, in-memory batches."""

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from scenic_eqx.data import Dataset, _synthetic_segmentation as synthetic, get_dataset, list_datasets
from scenic_eqx.data._in_memory import EvalBatches, train_batches

SIZE = 16


def _dataset(**kwargs):
    options = {"batch_size": 8, "eval_batch_size": 8, "image_size": SIZE, "seed": 0}
    options.update(num_train_examples=24, num_test_examples=20)
    return get_dataset("synthetic_segmentation", **{**options, **kwargs})


def _inside(shape, size):
    """An oracle independent of `shape_mask`: distances in the shape's own frame."""
    centres = np.arange(size) + 0.5
    y, x = np.meshgrid(centres - shape.center_y, centres - shape.center_x, indexing="ij")
    if shape.class_index == 1:
        return np.hypot(y, x) <= shape.radius
    # Edge midpoints of a regular polygon lie halfway between its vertices, at the
    # inradius R cos(pi / n); inside means within it along every edge normal.
    n = {2: 4, 3: 3}[shape.class_index]
    area = math.pi * shape.radius**2
    circumradius = math.sqrt(2 * area / (n * math.sin(2 * math.pi / n)))
    normals = shape.angle + math.pi / n + 2 * math.pi * np.arange(n) / n
    distances = np.cos(normals)[:, None, None] * x + np.sin(normals)[:, None, None] * y
    return np.all(distances <= circumradius * math.cos(math.pi / n), axis=0)


def test_meta_data_and_batches():
    ds = _dataset()
    assert isinstance(ds, Dataset) and "synthetic_segmentation" in list_datasets()
    assert ds.meta_data == {
        "num_classes": 4,
        "class_names": ("background", "disc", "square", "triangle"),
        "input_shape": (-1, SIZE, SIZE, 3),
        "input_dtype": np.float32,
        "num_train_examples": 24,
        "num_eval_examples": 20,
        "target_is_onehot": False,
        "dataset_name": "synthetic_segmentation",
        "valid_source": "test",
    }
    batch = next(ds.train_iter)
    assert batch["inputs"].shape == (8, SIZE, SIZE, 3) and batch["inputs"].dtype == np.float32
    assert batch["label"].shape == (8, SIZE, SIZE) and batch["label"].dtype == np.int32
    np.testing.assert_array_equal(batch["batch_mask"], np.ones(8, np.float32))
    assert 0 <= batch["inputs"].min() and batch["inputs"].max() <= 1
    assert ds.valid_iter is ds.test_iter


def test_deterministic_given_the_seed():
    a = synthetic.generate(6, image_size=SIZE, seed=1, split="train")
    b = synthetic.generate(6, image_size=SIZE, seed=1, split="train")
    for key in ("inputs", "label"):
        np.testing.assert_array_equal(a[key], b[key])
    # A larger split extends a smaller one; other seeds and the test split differ.
    longer = synthetic.generate(9, image_size=SIZE, seed=1, split="train")
    np.testing.assert_array_equal(longer["inputs"][:6], a["inputs"])
    for other in (
        synthetic.generate(6, image_size=SIZE, seed=2, split="train"),
        synthetic.generate(6, image_size=SIZE, seed=1, split="test"),
    ):
        assert not np.any(np.all(other["inputs"] == a["inputs"], axis=(1, 2, 3)))
    # The same shuffle seed gives the same training batches.
    first, second = _dataset(shuffle_seed=3), _dataset(shuffle_seed=3)
    for x, y in zip(itertools.islice(first.train_iter, 5), itertools.islice(second.train_iter, 5)):
        np.testing.assert_array_equal(x["inputs"], y["inputs"])
    assert not np.array_equal(
        next(_dataset(shuffle_seed=4).train_iter)["label"], next(_dataset().train_iter)["label"]
    )


def test_masks_are_the_drawn_shapes():
    size = 32
    for index in range(40):
        image, label, shapes = synthetic.sample_example(size, 0, "test", index)
        assert 1 <= len(shapes) <= synthetic.MAX_SHAPES
        covered = np.zeros((size, size), bool)
        for shape in shapes:
            inside = _inside(shape, size)
            assert inside.sum() > 10 and not np.any(inside & covered)  # visible, no overlap
            np.testing.assert_array_equal(label[inside], shape.class_index)
            # The pixel at the shape's centre has the shape's class.
            assert label[int(shape.center_y), int(shape.center_x)] == shape.class_index
            # Its pixels have its colour up to the noise (5 standard deviations).
            assert np.abs(image[inside] - np.array(shape.colour)).max() < 5 * synthetic.NOISE_STD
            covered |= inside
        assert np.all(label[~covered] == 0)


def test_classes_are_balanced():
    labels = synthetic.generate(300, image_size=32, seed=0, split="train")["label"]
    fractions = np.bincount(labels.ravel(), minlength=4) / labels.size
    assert 0.7 < fractions[0] < 0.9
    # Equal expected areas: the shape classes within 20% of each other.
    assert fractions[1:].min() > 0.05 and fractions[1:].max() < 1.2 * fractions[1:].min()
    images_with = [np.mean(np.any(labels == k, axis=(1, 2))) for k in (1, 2, 3)]
    assert min(images_with) > 0.4


def _real_examples(batches):
    out = []
    for batch in batches:
        assert batch["batch_mask"].shape == (8,)
        out += [x for x, m in zip(batch["inputs"], batch["batch_mask"]) if m == 1.0]
        assert np.all(batch["inputs"][batch["batch_mask"] == 0] == 0)
    return np.stack(out)


@pytest.mark.parametrize("process_count", [1, 3])
def test_eval_covers_each_example_once(process_count):
    test = synthetic.generate(20, image_size=SIZE, seed=0, split="test")
    hosts = [
        EvalBatches(test, batch_size=8, process_index=i, process_count=process_count)
        for i in range(process_count)
    ]
    # Every host runs as many steps; together they see every example once, in order.
    assert len({len(h) for h in hosts}) == 1
    assert all(len(list(h)) == len(h) for h in hosts)
    seen = np.concatenate([_real_examples(h) for h in hosts])
    np.testing.assert_array_equal(seen, test["inputs"])
    # A second pass gives the same batches.
    np.testing.assert_array_equal(_real_examples(hosts[0]), _real_examples(hosts[0]))


def test_train_is_shuffled_per_epoch_and_split_between_hosts():
    arrays = {"inputs": np.arange(26), "label": np.arange(26) % 4}
    hosts = [
        train_batches(arrays, batch_size=4, shuffle_seed=0, process_index=i, process_count=2)
        for i in range(2)
    ]
    # Each host's share: 13 examples (the remainder of 26 / 2 is none). Twelve batches
    # of four cover each example of the share once per 13 draws.
    draws = [np.concatenate([next(h)["inputs"] for _ in range(13)]) for h in hosts]
    assert set(draws[0]) == set(range(13)) and set(draws[1]) == set(range(13, 26))
    for d in draws:
        epochs = d.reshape(4, 13)
        assert all(sorted(e) == sorted(epochs[0]) for e in epochs)
        assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch
        assert not np.array_equal(np.sort(epochs[0]), epochs[0])  # shuffled


def test_unknown_option_and_bad_arguments():
    with pytest.raises(TypeError, match=r"Unknown option\(s\) image_szie .*known: .*image_size"):
        _dataset(image_szie=32)
    with pytest.raises(ValueError, match=r"`image_size` \(=4\) must be at least 8"):
        _dataset(image_size=4)
    with pytest.raises(ValueError, match=r"`num_test_examples` \(=0\) must be a positive integer"):
        _dataset(num_test_examples=0)
    with pytest.raises(ValueError, match=r"`seed` \(=-1\) must be a non-negative integer"):
        _dataset(seed=-1)
    with pytest.raises(
        ValueError,
        match=r"`arrays` hold 24 examples: none for each of `process_count` \(=32\) hosts",
    ):
        _dataset(process_index=0, process_count=32)


def test_import_does_not_import_tensorflow():
    code = (
        "import sys, scenic_eqx.data as d; "
        "d.get_dataset('synthetic_segmentation', batch_size=2, image_size=8, num_train_examples=2, "
        "num_test_examples=2, process_index=0, process_count=1); "
        "assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
