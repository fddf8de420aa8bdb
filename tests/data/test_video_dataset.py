"""`get_dataset("video_tfrecord")` and `write_video_records`: videos in the DMVR layout.

Frames of the test videos are plain grey levels or smooth ramps, which JPEG keeps to a
few levels, so decoded pixels tell which frame and which window of it came out.
"""

import collections
import itertools

import numpy as np
import pytest
import tensorflow as tf

from scenic_eqx.data import get_dataset, write_video_records

HOSTS = {"process_index": 0, "process_count": 1}
TOL = 3 / 255  # JPEG error on smooth frames


def _counting_video(num_frames, size=8):
    """Frame t is grey level 16 t: the decoded level tells the frame index."""
    levels = 16 * np.arange(num_frames, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, size, size, 3)).copy()


def _frame_indices(inputs):
    """Frame indices of clips `[..., time, h, w, c]` from their grey levels."""
    return np.round(inputs.mean(axis=(-3, -2, -1)) * 255 / 16).astype(int)


def _ramp_video(num_frames, height, width):
    """Identical frames: red rises left to right, green top to bottom (8 levels a pixel)."""
    red = np.broadcast_to(8 * np.arange(width)[None, :], (height, width))
    green = np.broadcast_to(8 * np.arange(height)[:, None], (height, width))
    frame = np.stack([red, green, np.full((height, width), 128)], axis=-1).astype(np.uint8)
    return np.broadcast_to(frame, (num_frames, height, width, 3)).copy()


def _dataset(train, test=None, **kwargs):
    options = dict(num_frames=4, num_classes=10, image_size=8, batch_size=4, eval_batch_size=4, **HOSTS)
    options.update(kwargs)
    return get_dataset("video_tfrecord", train_files=str(train), test_files=str(test or train), **options)


def test_write_video_records_layout(tmp_path):
    videos = [_counting_video(5), _counting_video(3, size=6)[..., :1]]
    path = tmp_path / "sub" / "videos.tfrecord"
    assert write_video_records(path, videos, [7, 2]) == 2
    records = [
        tf.train.SequenceExample.FromString(r) for r in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()
    ]
    assert [list(r.context.feature["clip/label/index"].int64_list.value) for r in records] == [[7], [2]]
    frames = [r.feature_lists.feature_list["image/encoded"].feature for r in records]
    assert [len(f) for f in frames] == [5, 3]
    decoded = tf.io.decode_jpeg(frames[1][2].bytes_list.value[0]).numpy()
    assert decoded.shape == (6, 6, 1) and abs(int(decoded.mean()) - 32) <= 2


@pytest.mark.parametrize(
    "videos, labels, kwargs, match",
    [
        (
            [np.zeros((2, 4, 4, 3), np.float32)],
            [0],
            {},
            r"`videos\[0\]` must be uint8 \[time, height, width, 1 or 3\] with time >= 1; got float32 \(2, 4, 4, 3\)",
        ),
        (
            [np.zeros((0, 4, 4, 3), np.uint8)],
            [0],
            {},
            r"`videos\[0\]` must be uint8 .*got uint8 \(0, 4, 4, 3\)",
        ),
        ([np.zeros((1, 4, 4, 3), np.uint8)], [-1], {}, r"`labels\[0\]` \(=-1\) must be a non-negative int"),
        ([np.zeros((1, 4, 4, 3), np.uint8)], [0, 1], {}, r"Got 1 `videos` but 2 `labels`"),
        (
            [np.zeros((1, 4, 4, 3), np.uint8)],
            [0],
            {"jpeg_quality": 0},
            r"`jpeg_quality` \(=0\) must be an int in 1..100",
        ),
    ],
)
def test_write_errors(tmp_path, videos, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_video_records(tmp_path / "x.tfrecord", videos, labels, **kwargs)


def test_train_clips_random_offset_stride_and_loop(tmp_path):
    # Videos of 12 frames (labels 0, 1) and one of 3 frames (label 2), shorter than a clip.
    path = tmp_path / "v.tfrecord"
    write_video_records(path, [_counting_video(12), _counting_video(12), _counting_video(3)], [0, 1, 2])
    ds = _dataset(path, stride=2)
    assert ds.meta_data["input_shape"] == (-1, 4, 8, 8, 3)
    starts = collections.defaultdict(set)
    for batch in itertools.islice(ds.train_iter, 15):
        assert batch["inputs"].shape == (4, 4, 8, 8, 3) and batch["inputs"].dtype == np.float32
        for clip, label in zip(_frame_indices(batch["inputs"]), batch["label"]):
            if label == 2:  # 3 frames, stride 2: 0, 2, 4 % 3 = 1, 6 % 3 = 0
                np.testing.assert_array_equal(clip, [0, 2, 1, 0])
            else:
                np.testing.assert_array_equal(np.diff(clip), [2, 2, 2])
                starts[int(label)].add(int(clip[0]))
    # A clip spans 7 frames: it starts anywhere in 0..5 of 12, and both ends come up.
    assert starts[0] | starts[1] <= set(range(6)) and {0, 5} <= starts[0] | starts[1]


@pytest.mark.parametrize(
    "num_clips, expected",
    [(1, [[3, 4, 5, 6]]), (3, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])],
)
def test_eval_middle_or_uniform_clips(tmp_path, num_clips, expected):
    path = tmp_path / "v.tfrecord"
    write_video_records(path, [_counting_video(10), _counting_video(2)], [4, 5])
    ds = _dataset(path, num_test_clips=num_clips)
    (batch,) = list(ds.test_iter)
    np.testing.assert_array_equal(batch["batch_mask"], [1, 1, 0, 0])
    np.testing.assert_array_equal(batch["label"], [4, 5, 0, 0])
    indices = _frame_indices(batch["inputs"][:2])
    if num_clips == 1:
        assert batch["inputs"].shape == (4, 4, 8, 8, 3)
        np.testing.assert_array_equal(indices, [expected[0], [0, 1, 0, 1]])
    else:
        assert batch["inputs"].shape == (4, 3, 4, 8, 8, 3)
        np.testing.assert_array_equal(indices, [expected, [[0, 1, 0, 1]] * 3])


def test_random_crop_and_flip_are_the_same_for_every_frame(tmp_path):
    path = tmp_path / "v.tfrecord"
    write_video_records(path, [_ramp_video(6, 12, 16)] * 2, [0, 1], jpeg_quality=100)
    # min_resize 12 keeps the 12x16 frames; crops of 8x8 start at rows 0..4, columns 0..8.
    ds = _dataset(path, image_size=8, min_resize=12, random_flip=True)
    tops, lefts, flips = set(), set(), set()
    for batch in itertools.islice(ds.train_iter, 8):
        for clip in batch["inputs"]:
            # Identical frames in, identical frames out: one window, one flip per clip.
            np.testing.assert_array_equal(clip, np.broadcast_to(clip[0], clip.shape))
            # Window means give its top-left corner; a flip turns the red ramp around.
            red, green = clip[0, ..., 0] * 255 / 8, clip[0, ..., 1] * 255 / 8
            assert green[:4].mean() + 3 < green[4:].mean()
            flipped = red[:, :4].mean() > red[:, 4:].mean()
            assert abs(red[:, :4].mean() - red[:, 4:].mean()) > 3
            tops.add(int(np.round(green.mean() - 3.5)))
            lefts.add(int(np.round(red.mean() - 3.5)))
            flips.add(bool(flipped))
    assert tops <= set(range(5)) and lefts <= set(range(9))
    assert len(tops) > 1 and len(lefts) > 2 and flips == {False, True}


def test_three_crops_along_the_longer_side_clip_major(tmp_path):
    path = tmp_path / "v.tfrecord"
    write_video_records(path, [_ramp_video(8, 12, 16), _ramp_video(8, 16, 12)], [0, 1], jpeg_quality=100)
    ds = _dataset(
        path, num_frames=2, stride=3, image_size=8, min_resize=12, num_test_clips=2, num_test_crops=3
    )
    assert ds.meta_data["num_test_views"] == 6
    (batch,) = list(ds.test_iter)
    assert batch["inputs"].shape == (4, 6, 2, 8, 8, 3)
    # Top-left corner (x, y) of each view's window: its mean red and green, less 3.5.
    corners = np.round(batch["inputs"][:2, :, 0, ..., :2].mean(axis=(2, 3)) * 255 / 8 - 3.5).astype(int)
    # Landscape 12x16: left, centre, right at columns 0, 4, 8, rows centred at 2; portrait
    # 16x12: top, centre, bottom at rows 0, 4, 8, columns centred at 2. Views are clip-major.
    np.testing.assert_array_equal(corners[0], [[0, 2], [4, 2], [8, 2]] * 2)
    np.testing.assert_array_equal(corners[1], [[2, 0], [2, 4], [2, 8]] * 2)


def test_resize_keeps_aspect_ratio(tmp_path):
    path = tmp_path / "v.tfrecord"
    write_video_records(path, [_ramp_video(2, 12, 24)], [0], jpeg_quality=100)
    ds = _dataset(path, num_frames=2, image_size=(6, 10), num_test_crops=1)
    (batch,) = list(ds.test_iter)
    # 12x24 -> 10x20 (smaller side to max(image_size)); the central 6x10 window starts at
    # row 2, column 5 of the resized frame, i.e. pixel (2.4, 6) of the original.
    red = batch["inputs"][0, 0, ..., 0].mean(axis=0) * 255 / 8
    slope, intercept = np.polyfit(np.arange(10), red, 1)
    np.testing.assert_allclose([slope, intercept], [1.2, (5 + 0.5) * 1.2 - 0.5], atol=0.2)


def test_eval_counts_every_video_once_and_same_seed_same_batches(tmp_path):
    paths = [tmp_path / f"v-{i}.tfrecord" for i in range(2)]
    write_video_records(paths[0], [_counting_video(6)] * 5, range(5))
    write_video_records(paths[1], [_counting_video(6)] * 4, range(5, 9))
    ds = _dataset(tmp_path / "v-*.tfrecord", eval_batch_size=4)
    assert ds.meta_data["num_train_examples"] == ds.meta_data["num_eval_examples"] == 9
    labels = [int(l) for b in ds.test_iter for l, m in zip(b["label"], b["batch_mask"]) if m == 1.0]
    assert sorted(labels) == list(range(9)) and len(ds.test_iter) == 3
    again = _dataset(tmp_path / "v-*.tfrecord", eval_batch_size=4)
    for a, b in zip(itertools.islice(ds.train_iter, 5), itertools.islice(again.train_iter, 5)):
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
        np.testing.assert_array_equal(a["label"], b["label"])


@pytest.mark.parametrize("num_files", [1, 3])
def test_two_hosts_split_files_or_records(tmp_path, num_files):
    for i in range(num_files):
        labels = list(range(i, 9, num_files))
        write_video_records(tmp_path / f"v-{i}.tfrecord", [_counting_video(4)] * len(labels), labels)
    train, test = [], []
    for process_index in range(2):
        ds = _dataset(
            tmp_path / "v-*.tfrecord",
            batch_size=4,
            eval_batch_size=2,
            process_index=process_index,
            process_count=2,
            shuffle_buffer_size=1,
        )
        # One batch is 4 records; a host's train share is 4 (records) or 3 to 6 (files).
        train.append({int(l) for b in itertools.islice(ds.train_iter, 3) for l in b["label"]})
        test.append([int(l) for b in ds.test_iter for l, m in zip(b["label"], b["batch_mask"]) if m == 1.0])
    assert not train[0] & train[1]
    assert sorted(test[0] + test[1]) == list(range(9))


def _write_raw(path, examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example if isinstance(example, bytes) else example.SerializeToString())


def _record(label=0, num_frames=2, label_kind="int64_list", frames_key="image/encoded"):
    example = tf.train.SequenceExample()
    if label is not None:
        getattr(example.context.feature["clip/label/index"], label_kind).value.append(label)
    frames = example.feature_lists.feature_list[frames_key]
    for _ in range(num_frames):
        frames.feature.add().bytes_list.value.append(tf.io.encode_jpeg(np.zeros((4, 4, 3), np.uint8)).numpy())
    return example


@pytest.mark.parametrize(
    "bad, match",
    [
        (
            _record(frames_key="frames"),
            r"record 3 of '.*train-00000.tfrecord' has no feature list 'image/encoded'; it has \['frames'\]",
        ),
        (
            _record(label=None),
            r"record 3 of '.*train-00000.tfrecord' has no context feature 'clip/label/index'; it has none",
        ),
        (
            _record(label=1.0, label_kind="float_list"),
            r"record 3 of .*: context feature 'clip/label/index' must hold one int64",
        ),
        (
            _record(num_frames=0),
            r"record 3 of '.*train-00000.tfrecord' has an empty feature list 'image/encoded'",
        ),
        (
            _record(label=10),
            r"record 3 of '.*train-00000.tfrecord' has label 10, outside \[0, `num_classes` \(=10\)\)",
        ),
        (
            b"\xff\xffnot a proto",
            r"record 3 of '.*train-00000.tfrecord' does not parse as a tf.train.SequenceExample",
        ),
    ],
)
def test_a_bad_record_is_named(tmp_path, bad, match):
    path = tmp_path / "train-00000.tfrecord"
    _write_raw(path, [_record(), _record(), _record(), bad])
    with pytest.raises(ValueError, match=match):
        _dataset(path)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`train_files` \(=.*nothing-\*'\) matches no file"):
        _dataset(tmp_path / "nothing-*")
    (tmp_path / "junk.tfrecord").write_bytes(b"this is not a TFRecord file")
    with pytest.raises(ValueError, match=r"'.*junk.tfrecord' is not a readable TFRecord file"):
        _dataset(tmp_path / "junk.tfrecord")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_test_crops": 2}, ValueError, r"`num_test_crops` \(=2\) must be 1 or 3"),
        ({"num_test_clips": 0}, ValueError, r"`num_test_clips` \(=0\) must be a positive integer"),
        ({"stride": 0}, ValueError, r"`stride` \(=0\) must be a positive integer"),
        ({"channels": 2}, ValueError, r"`channels` \(=2\) must be 1 or 3"),
        (
            {"image_size": (8, 12), "min_resize": 10},
            ValueError,
            r"`min_resize` \(=10\) must be at least the larger side of `image_size` \(=\(8, 12\)\)",
        ),
        (
            {"num_frame": 4},
            TypeError,
            r"Unknown option\(s\) num_frame for `get_dataset` of 'video_tfrecord'; known: train_files, test_files, num_frames",
        ),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, match):
    path = tmp_path / "v.tfrecord"
    write_video_records(path, [_counting_video(2)], [0])
    with pytest.raises(error, match=match):
        _dataset(path, **kwargs)


def test_too_many_hosts(tmp_path):
    path = tmp_path / "v.tfrecord"
    write_video_records(path, [_counting_video(2)], [0])
    with pytest.raises(
        ValueError,
        match=r"`train_files` hold 1 videos: none for host `process_index` \(=1\) of `process_count` \(=2\)",
    ):
        _dataset(path, process_index=1, process_count=2)
