"""`get_dataset` under `tfds.testing.mock_data` with TFDS's defaults, as TFDS documents.

Nothing is prepared and no split is known: TFDS serves the same `num_examples` random
examples for every split, generated from each dataset's features (images of random
size for ImageNet and Pet, COCO objects whose sequences have unrelated lengths).
Nothing is downloaded (`tfds.testing.mock_data` makes `download_and_prepare` a no-op,
and `get_dataset` never downloads).
"""

import gc

import numpy as np
import pytest
import tensorflow_datasets as tfds

from scenic_eqx import data

NUM_EXAMPLES = 5
# The TFDS catalogue datasets of the registry: those named after a TFDS builder.
CATALOGUE = [name for name in data.list_datasets() if name.split("/")[0] in tfds.list_builders()]
OPTIONS = {  # small images: fast
    "imagenet2012": {"image_size": 24},
    "oxford_iiit_pet": {"image_size": 24},
    "coco/2017": {"image_size": 24, "max_boxes": 4},
}


def test_the_catalogue_is_found():
    expected = {"cifar10", "coco/2017", "imagenet2012", "mnist", "oxford_iiit_pet", "svhn_cropped"}
    assert expected <= set(CATALOGUE)
    assert not {"arrays", "image_folder", "synthetic_detection"} & set(CATALOGUE)


def _check(batch, meta_data, batch_size):
    assert batch["inputs"].shape == (batch_size, *meta_data["input_shape"][1:])
    assert batch["inputs"].dtype == meta_data["input_dtype"]
    assert np.isfinite(batch["inputs"]).all()
    assert batch["batch_mask"].shape == (batch_size,) and batch["batch_mask"].dtype == np.float32
    label = batch["label"]
    if "max_boxes" in meta_data:
        boxes = meta_data["max_boxes"]
        assert label["boxes"].shape == (batch_size, boxes, 4) and label["boxes"].dtype == np.float32
        assert label["labels"].shape == (batch_size, boxes) and label["labels"].dtype == np.int32
        assert label["box_mask"].shape == (batch_size, boxes)
        assert label["labels"].max() < meta_data["num_classes"]
    else:
        assert label.shape == (batch_size,) and label.dtype == np.int32
        assert 0 <= label.min() and label.max() < meta_data["num_classes"]


@pytest.mark.parametrize("name", CATALOGUE)
def test_mock_data_with_tfds_defaults(tmp_path, name):
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        ds = data.get_dataset(
            name,
            batch_size=2,
            eval_batch_size=3,
            shuffle_buffer_size=4,
            data_dir=str(tmp_path),  # mocked: ignored by TFDS, and nothing is written
            **OPTIONS.get(name, {}),
        )
        meta_data = ds.meta_data
        assert meta_data["num_train_examples"] == NUM_EXAMPLES
        assert meta_data["num_eval_examples"] == NUM_EXAMPLES
        train = next(ds.train_iter)
        _check(train, meta_data, 2)
        np.testing.assert_array_equal(train["batch_mask"], [1, 1])
        for split in (ds.valid_iter, ds.test_iter):
            # 5 examples in batches of 3: the second one padded with one example.
            batches = list(split)
            assert len(split) == len(batches) == 2
            for batch in batches:
                _check(batch, meta_data, 3)
            np.testing.assert_array_equal(batches[1]["batch_mask"], [1, 1, 0])
    # A tf.data iterator left running a Python generator can stall the interpreter's exit.
    del ds, batches
    gc.collect()
    assert not any(tmp_path.iterdir())
