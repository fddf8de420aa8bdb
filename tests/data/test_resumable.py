"""`ResumableIterator`: every `train_iter` restores its position exactly, without replay.

The catalogue datasets run on fake data under `tfds.testing.mock_data` (metadata written
for tiny split sizes; example `i` encodes `i` in its pixels); a TensorFlow counter in
the fake files counts the examples read, to check that a restore reads no more than
its batches need, whatever the position.
"""

import gc
import itertools
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from scenic_eqx import data
from scenic_eqx.data import _in_memory, _pipeline

SIZES = {
    "mnist": {"train": 40, "test": 10},
    "fashion_mnist": {"train": 40, "test": 10},
    "cifar10": {"train": 50, "test": 10},
    "cifar100": {"train": 40, "test": 10},
    "svhn_cropped": {"train": 40, "test": 10},
    "imagenet2012": {"train": 16, "validation": 10},
    "oxford_iiit_pet": {"train": 16, "test": 10},
    "coco/2017": {"train": 16, "validation": 10},
}
OPTIONS = {  # small images: fast
    "imagenet2012": {"image_size": 16},
    "oxford_iiit_pet": {"image_size": 16},
    "coco/2017": {"image_size": 16, "max_boxes": 3},
}
# Examples read from the fake files since the last reset.
READS = tf.Variable(0, dtype=tf.int64)


def _image(i, channels=3):
    height, width = 20 + i % 7, 24 + i % 9  # of varying size
    return tf.fill([height, width, channels], tf.cast(i % 256, tf.uint8))


def _fake_example(name, features, i, encode_image):
    READS.assign_add(1)
    if name == "coco":
        k = tf.range(i % 3)
        kf = tf.cast(k, tf.float32)
        objects = {
            "bbox": tf.stack([0.1 + 0.1 * kf, 0.2 + 0 * kf, 0.5 + 0.1 * kf, 0.6 + 0 * kf], -1),
            "label": tf.cast((i + k) % 80, tf.int64),
            "is_crowd": k == 5,
        }
        return {"image": _image(i), "objects": objects}
    shape = features["image"].shape
    image = _image(i) if None in shape else tf.fill(shape, tf.cast(i % 256, tf.uint8))
    example = {"image": image, "label": tf.cast(i % features["label"].num_classes, tf.int64)}
    if name == "oxford_iiit_pet":
        example["segmentation_mask"] = tf.ones_like(image[..., :1])
    if encode_image:
        example["image"] = tf.io.encode_jpeg(example["image"], quality=100)
    return example


def _fake_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del read_config, shuffle_files
    parts = []
    for instruction in self.info.splits[split].file_instructions:
        split_name = re.search(r"-(\w+)\.tfrecord", instruction.filename).group(1)
        start = 1000 * ("train", "test", "validation").index(split_name) + instruction.skip
        parts.append(tf.data.Dataset.range(start, start + instruction.take))
    indices = parts[0]
    for part in parts[1:]:
        indices = indices.concatenate(part)
    encode = bool(decoders) and "image" in decoders
    features = self.info.features
    ds = indices.map(lambda i: _fake_example(self.name, features, i, encode))
    # The counter is the test's, not part of the data: a saved state ignores it.
    options = tf.data.Options()
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return ds.with_options(options)


@pytest.fixture(scope="module")
def metadata_dir(tmp_path_factory):
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
                name=split, shard_lengths=[n], num_bytes=0, filename_template=template.replace(split=split)
            )
            for split, n in sizes.items()
        ]
        builder.info.set_splits(tfds.core.SplitDict(splits))
        tf.io.gfile.makedirs(builder.data_dir)
        builder.info.write_to_directory(builder.data_dir)
    return str(root)


@pytest.fixture
def fake_tfds(metadata_dir):
    with tfds.testing.mock_data(data_dir=metadata_dir, as_dataset_fn=_fake_as_dataset):
        yield


def _catalogue(name, **kwargs):
    kwargs = {"batch_size": 4, "shuffle_buffer_size": 8, **OPTIONS.get(name, {}), **kwargs}
    return data.get_dataset(name, **kwargs).train_iter


def _arrays(**kwargs):
    rng = np.random.default_rng(0)
    split = (rng.integers(0, 256, (30, 4, 4, 1), np.uint8), np.arange(30) % 3)
    return data.from_arrays(split, split, **{"batch_size": 4, **kwargs}).train_iter


def _synthetic(name):
    def make(**kwargs):
        options = {"num_train_examples": 24, "num_test_examples": 4, "image_size": 8}
        return data.get_dataset(name, **{"batch_size": 4, **options, **kwargs}).train_iter

    return make


IN_MEMORY = {
    "arrays": _arrays,
    "synthetic_segmentation": _synthetic("synthetic_segmentation"),
    "synthetic_detection": _synthetic("synthetic_detection"),
}


def _assert_same(batches, expected):
    assert len(batches) == len(expected)
    for batch, want in zip(batches, expected):
        leaves, want_leaves = tf.nest.flatten(batch), tf.nest.flatten(want)
        assert tf.nest.map_structure(lambda x: None, batch) == tf.nest.map_structure(lambda x: None, want)
        for leaf, want_leaf in zip(leaves, want_leaves):
            assert leaf.dtype == want_leaf.dtype
            np.testing.assert_array_equal(leaf, want_leaf)


def _check_restore(make, tmp_path, k=5, m=4):
    """Take k batches, save, take m more; a fresh iterator restored yields those m."""
    batches = make()
    assert isinstance(batches, data.ResumableIterator)
    list(itertools.islice(batches, k))
    batches.save_state(str(tmp_path / "state"))
    expected = list(itertools.islice(batches, m))
    fresh = make()
    next(fresh)  # a trainer may have looked at a batch first: restoring overrides it
    fresh.restore_state(str(tmp_path / "state"))
    _assert_same(list(itertools.islice(fresh, m)), expected)


@pytest.mark.parametrize("name", list(SIZES))
def test_catalogue_restores_bitwise(fake_tfds, tmp_path, name):
    # The small datasets are held in memory, the others read on every epoch: k=5
    # crosses an epoch of the 16-example splits.
    _check_restore(lambda: _catalogue(name), tmp_path)


def test_digits_restores_bitwise(tmp_path):
    make = lambda: data.get_dataset("digits", batch_size=4, data_dir=str(tmp_path / "tfds")).train_iter  # noqa: E731
    _check_restore(make, tmp_path, k=400)  # past an epoch of the 1,437 images


@pytest.mark.parametrize("name", list(IN_MEMORY))
def test_in_memory_restores_bitwise(tmp_path, name):
    _check_restore(IN_MEMORY[name], tmp_path, k=7)  # batches cross epoch ends


def test_video_records_restore_bitwise(tmp_path):
    # Three files of two videos: files are interleaved in a seeded order.
    rng = np.random.default_rng(0)
    for f in range(3):
        videos = [rng.integers(0, 256, (3, 8, 8, 3), np.uint8) for _ in range(2)]
        data.write_video_records(tmp_path / f"train-{f}.tfrecord", videos, [f, 2 - f])
    make = lambda: data.get_dataset(  # noqa: E731
        "video_tfrecord", train_files=str(tmp_path / "train-*.tfrecord"),
        test_files=str(tmp_path / "train-0.tfrecord"), num_frames=2, num_classes=3,
        image_size=8, batch_size=2, shuffle_buffer_size=4,
    ).train_iter  # fmt: skip
    _check_restore(make, tmp_path, k=4)


@pytest.mark.parametrize("cache", [True, False])
def test_image_folder_restores_bitwise(tmp_path, cache):
    for split, count in (("train", 5), ("test", 2)):
        for label in ("a", "b"):
            folder = tmp_path / "root" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                image = tf.fill([6, 7, 3], tf.constant(40 * i + (label == "b"), tf.uint8))
                (folder / f"{i}.png").write_bytes(tf.io.encode_png(image).numpy())
    make = lambda: data.get_dataset(  # noqa: E731
        "image_folder", root=str(tmp_path / "root"), image_size=4, batch_size=3,
        shuffle_buffer_size=4, cache=cache,
    ).train_iter  # fmt: skip
    _check_restore(make, tmp_path, k=4)


def test_second_host_restores_bitwise(fake_tfds, tmp_path):
    hosts = {"process_index": 1, "process_count": 2}
    _check_restore(lambda: _catalogue("cifar10", **hosts), tmp_path)
    _check_restore(lambda: _arrays(**hosts), tmp_path / "arrays")


def test_mapped_batches_restore(tmp_path):
    double = lambda batch: {**batch, "inputs": 2 * batch["inputs"]}  # noqa: E731
    _check_restore(lambda: data.map_batches(double, _arrays()), tmp_path)
    assert not isinstance(data.map_batches(double, iter([])), data.ResumableIterator)


def test_a_new_save_replaces_the_old(fake_tfds, tmp_path):
    batches = _catalogue("cifar10")
    batches.save_state(str(tmp_path))
    list(itertools.islice(batches, 3))
    batches.save_state(str(tmp_path))
    expected = next(batches)
    fresh = _catalogue("cifar10")
    fresh.restore_state(str(tmp_path))
    _assert_same([next(fresh)], [expected])


def _reads_after_restore(k, tmp_path, m=3):
    batches = _catalogue("cifar10", cache=False)  # read from the files on every epoch
    list(itertools.islice(batches, k))
    batches.save_state(str(tmp_path / str(k)))
    expected = list(itertools.islice(batches, m))
    del batches  # stops its read-ahead, which would count below
    gc.collect()
    fresh = _catalogue("cifar10", cache=False)
    READS.assign(0)
    fresh.restore_state(str(tmp_path / str(k)))
    restored = list(itertools.islice(fresh, m))
    _assert_same(restored, expected)
    return int(READS.numpy())


def test_restore_reads_do_not_grow_with_the_position(fake_tfds, tmp_path):
    # Replaying k=500 batches of 4 would read 2,000+ examples (40 epochs of 50).
    few, many = _reads_after_restore(5, tmp_path), _reads_after_restore(500, tmp_path)
    # m=3 batches of 4 refill the shuffle buffer with 12 examples; prefetching and the
    # parallel map read a few batches ahead.
    assert few <= 60 and many <= 60


def test_in_memory_restore_draws_one_order(tmp_path, monkeypatch):
    draws = []
    permutation = _in_memory._permutation
    monkeypatch.setattr(_in_memory, "_permutation", lambda *args: draws.append(args[1]) or permutation(*args))
    batches = _arrays()
    list(itertools.islice(batches, 500))  # 2,000 examples: 66 epochs of 30
    batches.save_state(str(tmp_path))
    draws.clear()
    fresh = _arrays()
    fresh.restore_state(str(tmp_path))
    next(fresh)
    assert draws == [2000 // 30]  # the current epoch's order only


def test_in_memory_batches_are_unchanged():
    """The order of the previous implementation: seeded permutations, concatenated."""
    arrays = {"inputs": np.arange(10)[:, None], "label": np.arange(10)}
    batches = _in_memory.train_batches(arrays, batch_size=4, shuffle_seed=3)
    orders = [np.random.default_rng([3, epoch]).permutation(10) for epoch in range(3)]
    expected = np.concatenate(orders)[:28].reshape(7, 4)
    got = np.stack([b["label"] for b in itertools.islice(batches, 7)])
    np.testing.assert_array_equal(got, expected)


def test_cache_in_memory_keeps_the_cached_order():
    """Materialising `cache()` gives the same batches as `ds.cache()` itself."""
    ds = tf.data.Dataset.range(13).map(lambda i: {"x": tf.fill([2], i), "label": tf.cast(i, tf.int32)})

    def augment(example, seed):
        noise = tf.random.stateless_uniform([2], seed)
        return {"inputs": tf.cast(example["x"], tf.float32) + noise, "label": example["label"]}

    options = {"batch_size": 5, "shuffle_buffer_size": 4, "random_preprocess_fn": augment}
    held = _pipeline.train_pipeline(ds, cache=True, **options)
    cached = _pipeline.train_pipeline(ds.cache(), cache=False, **options)
    _assert_same(list(itertools.islice(held, 8)), list(itertools.islice(cached, 8)))


def test_parallel_interleave_of_files_restores_bitwise(tmp_path):
    """TFDS reads sharded files with a parallel, deterministic `interleave`."""
    files = []
    for f in range(4):
        files.append(str(tmp_path / f"shard-{f}.tfrecord"))
        with tf.io.TFRecordWriter(files[-1]) as writer:
            for i in range(10):
                writer.write(tf.io.serialize_tensor(tf.constant([10 * f + i])).numpy())

    def make():
        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(4, seed=1)
        ds = ds.interleave(
            tf.data.TFRecordDataset, cycle_length=2, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        ds = ds.map(lambda record: {"x": tf.io.parse_tensor(record, tf.int32)})

        def preprocess(example):
            return {"inputs": tf.cast(example["x"], tf.float32), "label": example["x"][0]}

        return _pipeline.train_pipeline(
            ds, batch_size=3, shuffle_buffer_size=5, cache=False, preprocess_fn=preprocess
        )

    for k in (1, 13, 14):  # 40 examples: batch 14 ends past the first epoch
        _check_restore(make, tmp_path / str(k), k=k, m=6)


def test_uncheckpointable_source_is_a_plain_iterator():
    ds = tf.data.Dataset.from_generator(
        lambda: ({"inputs": np.float32(i), "label": np.int32(i)} for i in range(6)),
        output_signature={
            "inputs": tf.TensorSpec([], tf.float32),
            "label": tf.TensorSpec([], tf.int32),
        },
    )
    # Not cached, the generator stays in the pipeline: a trainer replays it.
    batches = _pipeline.train_pipeline(ds, batch_size=2, cache=False, preprocess_fn=lambda x: x)
    assert not isinstance(batches, data.ResumableIterator)
    assert next(batches)["inputs"].shape == (2,)
    # Cached, it is read into memory first (its size known): the pipeline saves.
    ds = ds.apply(tf.data.experimental.assert_cardinality(6))
    batches = _pipeline.train_pipeline(ds, batch_size=2, cache=True, preprocess_fn=lambda x: x)
    assert isinstance(batches, data.ResumableIterator)
    del batches


@pytest.mark.parametrize(
    "other, match",
    [
        (lambda: _catalogue("cifar100"), r"dataset: saved 'cifar10', this pipeline 'cifar100'"),
        (lambda: _catalogue("cifar10", shuffle_seed=1), r"shuffle_seed: saved 0, this pipeline 1"),
        (lambda: _catalogue("cifar10", batch_size=8), r"batch_size: saved 4, this pipeline 8"),
        (lambda: _catalogue("cifar10", augment=False), r"augment: saved True, this pipeline False"),
        (
            lambda: _catalogue("cifar10", process_index=1, process_count=2),
            r"process_count: saved 1, this pipeline 2; process_index: saved 0, this pipeline 1",
        ),
        (lambda: _catalogue("cifar10", shuffle_buffer_size=16), r"shuffle_buffer_size: saved 8"),
        (lambda: _arrays(), r"pipeline: saved 'tf.data', this pipeline 'in_memory'"),
    ],
)
def test_another_pipelines_state_is_refused(fake_tfds, tmp_path, other, match):
    batches = _catalogue("cifar10")
    next(batches)
    batches.save_state(str(tmp_path))
    with pytest.raises(ValueError, match=r"holds the input position of another pipeline.*" + match):
        other().restore_state(str(tmp_path))


def test_in_memory_state_is_refused_by_other_data(tmp_path):
    batches = _arrays()
    batches.save_state(str(tmp_path))
    with pytest.raises(ValueError, match=r"batch_size: saved 4, this pipeline 2"):
        _arrays(batch_size=2).restore_state(str(tmp_path))
    with pytest.raises(ValueError, match=r"dataset: saved 'arrays', this pipeline 'synthetic_detection'"):
        IN_MEMORY["synthetic_detection"]().restore_state(str(tmp_path))
    seg = IN_MEMORY["synthetic_segmentation"]
    seg().save_state(str(tmp_path / "seg"))
    with pytest.raises(ValueError, match=r"seed: saved 0, this pipeline 1"):
        seg(seed=1).restore_state(str(tmp_path / "seg"))


def test_missing_state_is_refused(tmp_path):
    match = r"`directory` \(=.*nothing'\) holds no saved input position: input_state.json is missing"
    with pytest.raises(FileNotFoundError, match=match + r".*Received: "):
        _arrays().restore_state(str(tmp_path / "nothing"))
