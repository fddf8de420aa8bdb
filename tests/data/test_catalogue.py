"""The TFDS catalogue pipelines, each run on fake data under `tfds.testing.mock_data`.

The fake `as_dataset` honours splits (sub-splits of `tfds.even_splits` included) as a
prepared dataset would, from metadata written for tiny split sizes, and example `i`
of a split encodes `i` in its pixels: tests can tell which examples a pipeline read.
"""

import collections
import itertools
import logging
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from scenic_eqx import data
from scenic_eqx.data import _coco, _preprocess

SIZES = {
    "mnist": {"train": 40, "test": 10},
    "fashion_mnist": {"train": 40, "test": 10},
    "cifar10": {"train": 50, "test": 23},
    "cifar100": {"train": 40, "test": 10},
    "svhn_cropped": {"train": 40, "test": 10},
    "imagenet2012": {"train": 16, "validation": 10},
    "oxford_iiit_pet": {"train": 16, "test": 10},
    "coco/2017": {"train": 16, "validation": 10},
}
# Example i of a split is number OFFSET[split] + i: splits hold different examples.
OFFSET = {"train": 0, "test": 1000, "validation": 2000}


def _variable_image(i, channels=3):
    """An image of varying size whose channel 0 rises left to right (flips show)."""
    height, width = 30 + i % 7, 40 + i % 9
    ramp = tf.cast(tf.range(width) * 5, tf.uint8)
    return tf.stack(
        [tf.tile(ramp[None], [height, 1])]
        + [tf.fill([height, width], tf.cast(i % 256, tf.uint8))] * (channels - 1),
        axis=-1,
    )


def _fake_example(name, features, i, skip_image_decoding):
    if name == "coco":
        image = _variable_image(i)
        k = tf.range(i % 4)
        kf = tf.cast(k, tf.float32)
        objects = {
            "bbox": tf.stack([0.1 + 0.1 * kf, 0.2 + 0 * kf, 0.5 + 0.1 * kf, 0.6 + 0 * kf], -1),
            "label": tf.cast((i + k) % 80, tf.int64),
            "is_crowd": k == 2,
        }
        return {"image": image, "objects": objects}
    label = tf.cast(i % features["label"].num_classes, tf.int64)
    shape = features["image"].shape
    if None in shape:  # imagenet2012, oxford_iiit_pet
        image = _variable_image(i)
    else:
        # Channel 0 holds i % 256, channel 1 holds i // 256.
        codes = [i % 256, i // 256, 7][: shape[-1]]
        image = tf.stack([tf.fill(shape[:2], tf.cast(c, tf.uint8)) for c in codes], -1)
    example = {"image": image, "label": label}
    if name == "oxford_iiit_pet":
        # TFDS's mask values: 1 pet (top half), 2 background, 3 border (first column).
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
        mask = tf.where(cols == 0, 3, tf.where(rows < height // 2, 1, 2))
        example["segmentation_mask"] = tf.cast(mask, tf.uint8)[..., None]
    if skip_image_decoding:
        example["image"] = tf.io.encode_jpeg(example["image"], quality=100)
    return example


def _fake_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del read_config, shuffle_files
    parts = []
    for instruction in self.info.splits[split].file_instructions:
        split_name = re.search(r"-(\w+)\.tfrecord", instruction.filename).group(1)
        start = OFFSET[split_name] + instruction.skip
        parts.append(tf.data.Dataset.range(start, start + instruction.take))
    indices = parts[0]
    for part in parts[1:]:
        indices = indices.concatenate(part)
    skip = bool(decoders) and "image" in decoders
    features = self.info.features
    return indices.map(lambda i: _fake_example(self.name, features, i, skip))


@pytest.fixture(scope="module")
def metadata_dir(tmp_path_factory):
    """TFDS metadata (`dataset_info.json`) of every catalogue dataset, for SIZES."""
    root = tmp_path_factory.mktemp("metadata")
    for name, sizes in SIZES.items():
        builder = tfds.builder(name, data_dir=str(root))
        template = tfds.core.ShardedFileTemplate(
            data_dir=builder.data_dir,
            template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
            dataset_name=builder.name,
            filetype_suffix="tfrecord",
        )
        splits = [
            tfds.core.SplitInfo(
                name=split,
                shard_lengths=[n],
                num_bytes=0,
                filename_template=template.replace(split=split),
            )
            for split, n in sizes.items()
        ]
        builder.info.set_splits(tfds.core.SplitDict(splits))
        tf.io.gfile.makedirs(builder.data_dir)
        builder.info.write_to_directory(builder.data_dir)
    return str(root)


def get_dataset(name, **kwargs):
    # A shuffle buffer of 10,000 would first fill with ~1,000 epochs of these tiny splits.
    kwargs.setdefault("shuffle_buffer_size", 32)
    return data.get_dataset(name, **kwargs)


@pytest.fixture
def fake_tfds(metadata_dir):
    with tfds.testing.mock_data(data_dir=metadata_dir, as_dataset_fn=_fake_as_dataset):
        yield


# name, options, inputs shape, label shape, num_classes, train and eval split sizes.
CASES = [
    ("mnist", {}, (28, 28, 1), (), 10),
    ("fashion_mnist", {}, (28, 28, 1), (), 10),
    ("cifar10", {}, (32, 32, 3), (), 10),
    ("cifar100", {"randaugment": (1, 9)}, (32, 32, 3), (), 100),
    ("svhn_cropped", {}, (32, 32, 3), (), 10),
    ("imagenet2012", {"image_size": 24}, (24, 24, 3), (), 1000),
    ("oxford_iiit_pet", {"image_size": 24}, (24, 24, 3), (), 37),
    ("oxford_iiit_pet", {"image_size": 24, "task": "segmentation"}, (24, 24, 3), (24, 24), 3),
]


@pytest.mark.parametrize("name, options, shape, label_shape, num_classes", CASES)
def test_classification_and_segmentation_pipelines(fake_tfds, name, options, shape, label_shape, num_classes):
    ds = get_dataset(name, batch_size=4, eval_batch_size=3, data_dir="/nowhere", **options)
    train_size, eval_size = SIZES[name].values()
    assert ds.meta_data["num_classes"] == num_classes
    assert ds.meta_data["input_shape"] == (-1, *shape) and ds.meta_data["input_dtype"] == np.float32
    assert ds.meta_data["num_train_examples"] == train_size
    assert ds.meta_data["num_eval_examples"] == eval_size
    assert ds.meta_data["dataset_name"] == name and ds.meta_data["target_is_onehot"] is False
    for batch in itertools.islice(ds.train_iter, 2):
        assert batch["inputs"].shape == (4, *shape) and batch["inputs"].dtype == np.float32
        assert batch["label"].shape == (4, *label_shape) and batch["label"].dtype == np.int32
        np.testing.assert_array_equal(batch["batch_mask"], np.ones(4))
        assert np.isfinite(batch["inputs"]).all()
        assert 0 <= batch["label"].min() and batch["label"].max() < num_classes
    batches = list(ds.valid_iter)
    assert len(batches) == len(ds.valid_iter) == -(-eval_size // 3)
    assert sum(b["batch_mask"].sum() for b in batches) == eval_size
    assert all(b["inputs"].shape == (3, *shape) for b in batches)
    assert ds.test_iter is ds.valid_iter


def test_mnist_values_are_in_the_unit_range(fake_tfds):
    ds = get_dataset("mnist", batch_size=5, eval_batch_size=10, shuffle_buffer_size=1)
    (batch,) = list(ds.valid_iter)
    # Example 1000 + i is the constant image (1000 + i) % 256.
    np.testing.assert_allclose(batch["inputs"][:, 0, 0, 0], (1000 + np.arange(10)) % 256 / 255, rtol=1e-6)
    np.testing.assert_array_equal(batch["label"], (1000 + np.arange(10)) % 10)


def test_crop_pad_translates_the_training_images(fake_tfds):
    """Fake MNIST images are constant: a translated one keeps that value on a 26x26-or-larger
    rectangle and is zero (the padding) on the rows and columns shifted in."""
    ds = get_dataset("mnist", batch_size=8, eval_batch_size=10, crop_pad=2)
    shifted = 0
    for batch in itertools.islice(ds.train_iter, 4):
        for image in batch["inputs"][..., 0]:
            value = image.max()
            if value == 0:  # the example of value 0 shows no border
                continue
            rows, cols = np.nonzero(image.any(axis=1))[0], np.nonzero(image.any(axis=0))[0]
            assert len(rows) >= 26 and len(cols) >= 26
            np.testing.assert_array_equal(image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], value)
            shifted += (len(rows), len(cols)) != (28, 28)
    assert shifted >= 8  # most of the 32 moved (a shift of 0 in both axes is 1 in 25)
    (evaluation,) = list(ds.valid_iter)
    assert (evaluation["inputs"][:, [0, -1]] == evaluation["inputs"][:, [1, -2]]).all()  # not translated


def _cifar_ids(batch):
    """The example numbers of CIFAR batches, read from the central pixel."""
    mean, std = _preprocess.CIFAR10_MEAN, _preprocess.CIFAR10_STD
    centre = batch["inputs"][:, 16, 16, :2] * np.array(std[:2]) + np.array(mean[:2])
    low, high = np.round(centre * 255).astype(int).T
    return (low + 256 * high)[batch["batch_mask"] > 0].tolist()


@pytest.mark.parametrize("hosts", [2, 4])
def test_hosts_split_the_training_epoch(fake_tfds, hosts):
    share = 50 // hosts  # 25 or 12: the remainder (0 or 2 examples) is dropped
    seen = []
    for index in range(hosts):
        ds = get_dataset(
            "cifar10",
            batch_size=share,
            process_index=index,
            process_count=hosts,
            shuffle_buffer_size=1,
        )
        first, second = itertools.islice(ds.train_iter, 2)
        epoch = _cifar_ids(first)
        assert sorted(epoch) == sorted(_cifar_ids(second))  # the next epoch, same share
        seen.append(epoch)
        # Augmented: pad-and-crop brings zero padding into some images.
        padding = -np.array(_preprocess.CIFAR10_MEAN) / np.array(_preprocess.CIFAR10_STD)
        assert np.isclose(first["inputs"], padding, atol=1e-5).all(-1).any()
    assert sorted(itertools.chain(*seen)) == list(range(share * hosts))


@pytest.mark.parametrize("hosts", [2, 4])
def test_hosts_share_the_eval_split_exactly_once(fake_tfds, hosts):
    counts, ids = set(), []
    for index in range(hosts):
        ds = get_dataset("cifar10", batch_size=4, eval_batch_size=4, process_index=index, process_count=hosts)
        counts.add(len(ds.valid_iter))
        ids += [i for batch in ds.valid_iter for i in _cifar_ids(batch)]
    assert len(counts) == 1  # every host runs as many evaluation steps
    assert collections.Counter(ids) == collections.Counter(range(1000, 1023))


def test_same_seed_same_batches(fake_tfds):
    def batches(seed):
        ds = get_dataset("cifar10", batch_size=8, shuffle_seed=seed, shuffle_buffer_size=16)
        return list(itertools.islice(ds.train_iter, 4))

    first, again, other = batches(0), batches(0), batches(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert not all(np.array_equal(a["inputs"], c["inputs"]) for a, c in zip(first, other))


def test_segmentation_flips_images_and_masks_together(fake_tfds):
    ds = get_dataset("oxford_iiit_pet", batch_size=16, image_size=24, task="segmentation")
    batch = next(ds.train_iter)
    flips = []
    for image, label in zip(batch["inputs"][..., 0], batch["label"]):
        # The border (2) is the first column of the mask; channel 0 rises to the right.
        flipped = (label[:, -1] == 2).all()
        assert flipped != (label[:, 0] == 2).all()
        assert (np.diff(image[0]) < 0).all() == flipped
        assert set(np.unique(label[:12, 1:-1])) == {0} and set(np.unique(label[12:, 1:-1])) == {1}
        flips.append(flipped)
    assert 0 < sum(flips) < 16


def test_coco_detection_labels(fake_tfds):
    ds = get_dataset("coco/2017", batch_size=2, eval_batch_size=4, image_size=64, max_boxes=5)
    assert ds.meta_data["num_classes"] == 80 and ds.meta_data["max_boxes"] == 5
    assert ds.meta_data["input_shape"] == (-1, 64, 64, 3)
    batch = next(iter(ds.valid_iter))
    label = batch["label"]
    assert set(label) == {"boxes", "labels", "box_mask"}
    assert label["boxes"].shape == (4, 5, 4) and label["boxes"].dtype == np.float32
    assert label["labels"].shape == (4, 5) and label["labels"].dtype == np.int32
    # Example 2000 + j has (2000 + j) % 4 objects; the third (k = 2) is a crowd.
    np.testing.assert_array_equal(label["box_mask"].sum(1), [0, 1, 2, 2])
    height, width = 30 + 2003 % 7, 40 + 2003 % 9  # example 2003: 3 objects, 2 kept
    scale = np.round(np.array([height, width]) * 64 / max(height, width)) / 64
    ymin, xmin, ymax, xmax = np.array([[0.1, 0.2, 0.5, 0.6], [0.2, 0.2, 0.6, 0.6]]).T
    expected = np.stack(
        [
            (xmin + xmax) / 2 * scale[1],
            (ymin + ymax) / 2 * scale[0],
            (xmax - xmin) * scale[1],
            (ymax - ymin) * scale[0],
        ],
        -1,
    )
    np.testing.assert_allclose(label["boxes"][3, :2], expected, rtol=1e-5)
    np.testing.assert_array_equal(label["labels"][3], [2003 % 80, 2004 % 80, 0, 0, 0])
    np.testing.assert_array_equal(label["boxes"][3, 2:], 0.0)
    # The padded area of the image is zero.
    rows = int(round(scale[0] * 64))
    np.testing.assert_array_equal(batch["inputs"][3, rows:], 0.0)
    train = next(ds.train_iter)
    assert train["label"]["boxes"].shape == (2, 5, 4) and train["inputs"].shape == (2, 64, 64, 3)


def test_flip_boxes_and_max_boxes():
    bbox = tf.constant([[0.1, 0.2, 0.5, 0.7]])
    np.testing.assert_allclose(_coco.flip_boxes(bbox), [[0.1, 0.3, 0.5, 0.8]], rtol=1e-6)
    objects = {
        "bbox": tf.constant([[0.0, 0.0, 1.0, 0.5]] * 3),
        "label": tf.constant([4, 5, 6], tf.int64),
        "is_crowd": tf.constant([False, False, False]),
    }
    label = _coco.detection_label(objects, tf.constant([0.5, 1.0]), max_boxes=2)
    np.testing.assert_allclose(label["boxes"], [[0.25, 0.25, 0.5, 0.5]] * 2)
    np.testing.assert_array_equal(label["labels"], [4, 5])
    np.testing.assert_array_equal(label["box_mask"], [1, 1])


def test_no_autograph_warnings(fake_tfds, caplog):
    with caplog.at_level(logging.WARNING):
        ds = get_dataset("cifar10", batch_size=2, randaugment=(1, 5))
        next(ds.train_iter)
        next(iter(ds.valid_iter))
    assert "AutoGraph" not in caplog.text


@pytest.mark.parametrize(
    "name, options, error, match",
    [
        ("cifar10", {"task": "segmentation"}, TypeError, r"Unknown option\(s\) task .*'cifar10'"),
        (
            "oxford_iiit_pet",
            {"task": "depth"},
            ValueError,
            r"`task` \(='depth'\) must be 'classification' or",
        ),
        (
            "oxford_iiit_pet",
            {"image_size": 0},
            ValueError,
            r"`image_size` \(=0\) must be a positive int",
        ),
        (
            "coco/2017",
            {"max_boxes": 0},
            ValueError,
            r"`max_boxes` \(=0\) must be a positive integer",
        ),
        ("mnist", {"randaugment": (1, 5)}, ValueError, r"`image` must be RGB"),
        ("mnist", {"crop_pad": -1}, ValueError, r"`crop_pad` must be a non-negative int"),
        ("mnist", {"crop_pad": 2, "augment": False}, ValueError, r"needs `augment=True`"),
    ],
)
def test_bad_options(fake_tfds, name, options, error, match):
    with pytest.raises(error, match=match):
        get_dataset(name, batch_size=2, **options)


def test_not_prepared_datasets_are_not_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'cifar10' is not prepared in .*tfds build cifar10"):
        data.get_dataset("cifar10", batch_size=2, data_dir=str(tmp_path))
    match = r"'imagenet2012' is not prepared .*ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar"
    with pytest.raises(FileNotFoundError, match=match + r".*missing: ILSVRC2012_img_train.tar"):
        data.get_dataset("imagenet2012", batch_size=2, data_dir=str(tmp_path), manual_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())
