"""`get_dataset("synthetic_detection")`: the segmentation shapes, labelled with boxes."""

import itertools

import numpy as np
import pytest

from scenic_eqx.data import (
    _synthetic_detection as detection,
    _synthetic_segmentation as segmentation,
    get_dataset,
    list_datasets,
)

SIZE = 24


def _dataset(**kwargs):
    options = {"batch_size": 8, "eval_batch_size": 8, "image_size": SIZE, "seed": 0}
    options.update(num_train_examples=24, num_test_examples=20)
    return get_dataset("synthetic_detection", **{**options, **kwargs})


def test_meta_data_and_batches():
    ds = _dataset()
    assert "synthetic_detection" in list_datasets()
    assert ds.meta_data["num_classes"] == 3 and ds.meta_data["max_boxes"] == 3
    assert ds.meta_data["class_names"] == ("disc", "square", "triangle")
    batch = next(ds.train_iter)
    assert batch["inputs"].shape == (8, SIZE, SIZE, 3) and batch["inputs"].dtype == np.float32
    label = batch["label"]
    assert label["boxes"].shape == (8, 3, 4) and label["boxes"].dtype == np.float32
    assert label["labels"].shape == (8, 3) and label["labels"].dtype == np.int32
    assert label["box_mask"].shape == (8, 3) and label["box_mask"].dtype == np.float32
    np.testing.assert_array_equal(batch["batch_mask"], np.ones(8, np.float32))


def test_boxes_are_the_tightest_around_the_segmentation_masks():
    data = detection.generate(40, image_size=SIZE, seed=0, split="test")
    masks = segmentation.generate(40, image_size=SIZE, seed=0, split="test")
    np.testing.assert_array_equal(data["inputs"], masks["inputs"])
    centres = (np.arange(SIZE) + 0.5) / SIZE
    for i in range(40):
        label, class_map = {k: v[i] for k, v in data["label"].items()}, masks["label"][i]
        real = label["box_mask"] > 0
        # Box masks are a prefix: real boxes first, then zero padding.
        assert real.sum() >= 1 and np.all(np.diff(label["box_mask"]) <= 0)
        assert np.all(label["boxes"][~real] == 0) and np.all(label["labels"][~real] == 0)
        covered = np.zeros_like(class_map, bool)
        for (cx, cy, w, h), k in zip(label["boxes"][real], label["labels"][real]):
            inside = ((np.abs(centres - cy) < h / 2)[:, None]) & (np.abs(centres - cx) < w / 2)[None, :]
            shape = inside & (class_map == k + 1)
            # The box holds pixels of its class touching all four of its sides.
            rows, cols = np.flatnonzero(shape.any(1)), np.flatnonzero(shape.any(0))
            assert (
                rows[0] == np.flatnonzero(inside.any(1))[0] and rows[-1] == np.flatnonzero(inside.any(1))[-1]
            )
            assert (
                cols[0] == np.flatnonzero(inside.any(0))[0] and cols[-1] == np.flatnonzero(inside.any(0))[-1]
            )
            covered |= shape
        # Every shape pixel is in a box of its class.
        np.testing.assert_array_equal(covered, class_map > 0)


def test_shape_box_of_a_known_mask():
    mask = np.zeros((10, 20), bool)
    mask[2:5, 4:12] = True
    np.testing.assert_allclose(detection.shape_box(mask), [8 / 20, 3.5 / 10, 8 / 20, 3 / 10])


def test_deterministic_and_split_across_hosts():
    first, second = _dataset(shuffle_seed=3), _dataset(shuffle_seed=3)
    for x, y in zip(itertools.islice(first.train_iter, 4), itertools.islice(second.train_iter, 4)):
        np.testing.assert_array_equal(x["label"]["boxes"], y["label"]["boxes"])
    # Two hosts' evaluation batches hold every test example once, labels included.
    whole = [b for b in _dataset().test_iter]
    hosts = [b for p in range(2) for b in _dataset(process_index=p, process_count=2).test_iter]
    real = lambda batches: np.concatenate([b["label"]["boxes"][b["batch_mask"] > 0] for b in batches])  # noqa: E731
    np.testing.assert_array_equal(real(hosts), real(whole))
    assert len(real(whole)) == 20


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="`image_size`"):
        _dataset(image_size=4)
    with pytest.raises(ValueError, match="`seed`"):
        _dataset(seed=-1)
