"""Video records in the DMVR layout: writing them, and checking them with clear errors.

A record is a serialized `tf.train.SequenceExample` holding one video: its JPEG frames,
in order, in the feature list `image/encoded` (one bytes value per frame) and its class
in the context feature `clip/label/index` (one int64), as DMVR (Alayrac et al. 2020,
github.com/google-deepmind/dmvr) and Scenic's video projects read them.

Importing this module does not import TensorFlow; its functions do.
"""

import os
from collections.abc import Iterable, Sequence

import numpy as np

from .._extras import require

IMAGE_KEY = "image/encoded"
LABEL_KEY = "clip/label/index"


def write_video_records(
    path: str | os.PathLike,
    videos: Iterable[np.ndarray],
    labels: Iterable[int],
    *,
    jpeg_quality: int = 95,
) -> int:
    """Writes videos and their labels to one TFRecord file in the DMVR layout.

    To shard a large dataset, call it once per file (`train-00000-of-00010.tfrecord`,
    ...); `get_dataset("video_tfrecord", train_files="DIR/train-*.tfrecord", ...)`
    reads them back.

    Arguments:
        path: the file to write (its folder is created if missing; an existing file is
            replaced).
        videos: uint8 arrays `[time, height, width, channels]`, `channels` 1 or 3, at
            least one frame each; videos may differ in length and size.
        labels: the class index of each video, a non-negative int.
        jpeg_quality: JPEG quality of the frames, 1..100.

    Returns:
        The number of records written.
    """
    if not (isinstance(jpeg_quality, int) and 1 <= jpeg_quality <= 100):
        raise ValueError(f"`jpeg_quality` (={jpeg_quality!r}) must be an int in 1..100.")
    tf = require("tensorflow", "data", "scenic_eqx.data.write_video_records")

    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    videos, labels = list(videos), list(labels)
    if len(videos) != len(labels):
        raise ValueError(f"Got {len(videos)} `videos` but {len(labels)} `labels`.")
    with tf.io.TFRecordWriter(path) as writer:
        for index, (video, label) in enumerate(zip(videos, labels)):
            video = np.asarray(video)
            if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] not in (1, 3) or not len(video):
                raise ValueError(
                    f"`videos[{index}]` must be uint8 [time, height, width, 1 or 3] with "
                    f"time >= 1; got {video.dtype} {video.shape}."
                )
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
                raise ValueError(f"`labels[{index}]` (={label!r}) must be a non-negative int.")
            frames = [tf.io.encode_jpeg(frame, quality=jpeg_quality).numpy() for frame in video]
            example = tf.train.SequenceExample()
            example.context.feature[LABEL_KEY].int64_list.value.append(int(label))
            feature_list = example.feature_lists.feature_list[IMAGE_KEY]
            for frame in frames:
                feature_list.feature.add().bytes_list.value.append(frame)
            writer.write(example.SerializeToString())
    return len(videos)


def parse_record(serialized):
    """`(frames, label)` of one record: JPEG bytes `[num_frames]` (string) and int64."""
    import tensorflow as tf

    context, sequence = tf.io.parse_single_sequence_example(
        serialized,
        context_features={LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)},
        sequence_features={IMAGE_KEY: tf.io.FixedLenSequenceFeature([], tf.string)},
    )
    return sequence[IMAGE_KEY], context[LABEL_KEY]


def _diagnose(path: str) -> None:
    """Raises a `ValueError` naming the first record of `path` that is not in the layout."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    for index, serialized in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        where = f"record {index} of {path!r}"
        try:
            example = tf.train.SequenceExample.FromString(serialized)
        except DecodeError:
            raise ValueError(f"{where} does not parse as a tf.train.SequenceExample.") from None
        context = example.context.feature
        if LABEL_KEY not in context:
            raise ValueError(
                f"{where} has no context feature {LABEL_KEY!r}; it has {sorted(context) or 'none'}."
            )
        label = context[LABEL_KEY]
        if label.WhichOneof("kind") != "int64_list" or len(label.int64_list.value) != 1:
            raise ValueError(f"{where}: context feature {LABEL_KEY!r} must hold one int64; got {label}.")
        feature_lists = example.feature_lists.feature_list
        if IMAGE_KEY not in feature_lists:
            raise ValueError(
                f"{where} has no feature list {IMAGE_KEY!r}; it has {sorted(feature_lists) or 'none'}."
            )
        for frame_index, frame in enumerate(feature_lists[IMAGE_KEY].feature):
            if frame.WhichOneof("kind") != "bytes_list" or len(frame.bytes_list.value) != 1:
                raise ValueError(
                    f"{where}: frame {frame_index} of feature list {IMAGE_KEY!r} must hold "
                    f"one bytes value (a JPEG image)."
                )


def read_record_info(path: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Parses every record of `path` once: their frame counts and labels, checked.

    Arguments:
        path: a TFRecord file in the DMVR layout.
        num_classes: labels must lie in `[0, num_classes)`.

    Returns:
        `(num_frames, labels)`, int64 arrays `[num_records]`.

    Raises:
        ValueError: naming the file, the record and what is wrong with it.
    """
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert
    def frame_count_and_label(serialized):
        frames, label = parse_record(serialized)
        return tf.size(frames, out_type=tf.int64), label

    ds = tf.data.TFRecordDataset(path).map(frame_count_and_label)
    counts, labels = [], []
    try:
        for batch_counts, batch_labels in ds.batch(4096).as_numpy_iterator():
            counts.append(batch_counts)
            labels.append(batch_labels)
    except tf.errors.DataLossError as error:
        raise ValueError(f"{path!r} is not a readable TFRecord file: {error.message}") from None
    except tf.errors.InvalidArgumentError as error:
        _diagnose(path)
        raise ValueError(f"A record of {path!r} does not parse: {error.message}") from None
    counts = np.concatenate(counts) if counts else np.zeros((0,), np.int64)
    labels = np.concatenate(labels) if labels else np.zeros((0,), np.int64)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(f"record {empty[0]} of {path!r} has an empty feature list {IMAGE_KEY!r}.")
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if outside.size:
        raise ValueError(
            f"record {outside[0]} of {path!r} has label {labels[outside[0]]}, outside "
            f"[0, `num_classes` (={num_classes}))."
        )
    return counts, labels


def expand_files(name: str, patterns: str | Sequence[str]) -> list[str]:
    """The sorted files matching `patterns` (a glob, or a list of paths and globs)."""
    import tensorflow as tf

    pattern_list = [patterns] if isinstance(patterns, (str, os.PathLike)) else list(patterns)
    files = sorted({f for p in pattern_list for f in tf.io.gfile.glob(os.fspath(p))})
    if not files:
        raise FileNotFoundError(f"`{name}` (={patterns!r}) matches no file.")
    return files
