"""`video_tfrecord`: video classification from TFRecords in the DMVR layout.

Every record is checked once when the dataset is built (see `_video_records`), so a
malformed one fails there with its file and index, not in the middle of training.
Training clips start at random, are randomly cropped and (optionally) flipped; eval
takes `num_test_clips` clips times `num_test_crops` crops of every video, stacked in
one example. Importing this module imports TensorFlow.
"""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from . import _pipeline, _video_clips
from ._checks import check_positive_int
from ._dataset import Dataset
from ._image_folder import _image_size
from ._meta_data import MetaData
from ._video_records import expand_files, parse_record, read_record_info


def _host_share(files, counts, *, process_index, process_count, train, shuffle_seed):
    """This host's records and every host's record count.

    With at least as many files as hosts, hosts take whole files (`files[i::n]`) and
    read only those; else every host reads all files and keeps every `n`-th record.
    """
    if len(files) >= process_count:
        host_files = files[process_index::process_count]
        host_counts = [sum(counts[h::process_count]) for h in range(process_count)]
        if train:
            # Files in a new seeded order each epoch, records of several read in turn.
            ds = tf.data.Dataset.from_tensor_slices(host_files).shuffle(len(host_files), seed=shuffle_seed)
            ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(host_files), 8))
        else:
            ds = tf.data.TFRecordDataset(host_files)
        return ds, host_counts
    total = sum(counts)
    ds = tf.data.TFRecordDataset(files)
    if train:
        # Equal shares, the remainder dropped, as `tfds.even_splits(..., drop_remainder=True)`.
        share = total // process_count
        return ds.take(share * process_count).shard(process_count, process_index), [share] * process_count
    return ds.shard(process_count, process_index), _pipeline.even_shares(total, process_count)


def video_tfrecord_dataset(
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int,
    process_index: int,
    process_count: int,
    train_files,
    test_files,
    num_frames: int,
    num_classes: int,
    stride: int = 1,
    image_size: int | Sequence[int] = 224,
    min_resize: int | None = None,
    channels: int = 3,
    num_test_clips: int = 1,
    num_test_crops: int = 1,
    random_flip: bool = True,
    shuffle_buffer_size: int = 1_000,
    cache: bool = False,
    prefetch: int = 2,
) -> Dataset:
    """The `video_tfrecord` entry of `get_dataset`: DMVR-layout videos (see `write_video_records`).

    Arguments:
        batch_size, eval_batch_size, shuffle_seed, process_index, process_count: as in
            `get_dataset`.
        train_files: a glob (`"DIR/train-*.tfrecord"`) or a list of paths and globs.
        test_files: the same for the held-out videos; `valid_iter` and `test_iter` both
            pass over them.
        num_frames: frames per clip.
        num_classes: the number of classes; every label must lie in `[0, num_classes)`.
        stride: distance between the sampled frames of a clip (1: consecutive frames).
        image_size: `(height, width)` (or one int) of the crops.
        min_resize: frames are first resized (aspect ratio kept) so that their smaller
            side is this; defaults to `max(image_size)`, the least that fits a crop.
        channels: 3 (RGB) or 1 (grey).
        num_test_clips: eval clips per video: 1 is the middle clip, more are spaced
            evenly from the first frame to the last.
        num_test_crops: eval crops per clip: 1 (central) or 3 (start, centre and end of
            the frame's longer side).
        random_flip: in training, mirror each clip left-right with probability 1/2
            (turn it off when left and right carry the class).
        shuffle_buffer_size, prefetch: as in `get_dataset`.
        cache: keep this host's encoded records in memory after the first epoch.

    Returns:
        A `Dataset`. Training `inputs` are float32 `[batch, num_frames, height, width,
        channels]` in [0, 1]. Eval `inputs` are the same with one view per video, and
        `[batch, views, num_frames, height, width, channels]` with `views =
        num_test_clips * num_test_crops` (clip-major), so an eval example is still one
        video, counted once: the model averages over its views (`nn.ViViT` averages
        its logits). `meta_data` adds `num_test_views`.
    """
    num_frames, stride = check_positive_int("num_frames", num_frames), check_positive_int("stride", stride)
    num_classes = check_positive_int("num_classes", num_classes)
    num_test_clips = check_positive_int("num_test_clips", num_test_clips)
    if num_test_crops not in (1, 3):
        raise ValueError(f"`num_test_crops` (={num_test_crops!r}) must be 1 or 3.")
    if channels not in (1, 3):
        raise ValueError(f"`channels` (={channels!r}) must be 1 or 3.")
    size = _image_size(image_size)
    if min_resize is None:
        min_resize = max(size)
    elif check_positive_int("min_resize", min_resize) < max(size):
        raise ValueError(
            f"`min_resize` (={min_resize}) must be at least the larger side of `image_size` "
            f"(={size}), so that a crop fits."
        )
    splits = {}
    for name, patterns in (("train_files", train_files), ("test_files", test_files)):
        files = expand_files(name, patterns)
        infos = [read_record_info(f, num_classes) for f in files]
        splits[name] = files, [len(counts) for counts, _ in infos]
    num_views = num_test_clips * num_test_crops

    @tf.autograph.experimental.do_not_convert
    def clip_of(frames: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        decoded = _video_clips.decode_frames(tf.gather(frames, tf.reshape(indices, [-1])), channels)
        return _video_clips.resize_smaller_side(tf.cast(decoded, tf.float32), min_resize) / 255.0

    @tf.autograph.experimental.do_not_convert
    def train_example(record: tf.Tensor, seed: tf.Tensor) -> dict:
        frames, label = parse_record(record)
        offset_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        length = tf.shape(frames)[0]
        offset = _video_clips.random_offset(length, num_frames, stride, offset_seed)
        clip = clip_of(frames, _video_clips.clip_indices(length, offset, num_frames, stride))
        clip = _video_clips.random_crop_and_flip(clip, size, crop_seed, flip=random_flip)
        return {
            "inputs": tf.ensure_shape(clip, (num_frames, *size, channels)),
            "label": tf.cast(label, tf.int32),
        }

    @tf.autograph.experimental.do_not_convert
    def eval_example(record: tf.Tensor) -> dict:
        frames, label = parse_record(record)
        length = tf.shape(frames)[0]
        offsets = _video_clips.eval_offsets(length, num_frames, stride, num_test_clips)
        indices = tf.map_fn(
            lambda offset: _video_clips.clip_indices(length, offset, num_frames, stride), offsets
        )
        clips = clip_of(frames, indices)
        clips = tf.reshape(clips, tf.concat([[num_test_clips, num_frames], tf.shape(clips)[1:]], 0))
        views = tf.map_fn(
            lambda clip: _video_clips.eval_crops(clip, size, num_test_crops),
            clips,
            fn_output_signature=tf.TensorSpec([num_test_crops, num_frames, *size, channels], tf.float32),
        )
        shape = (num_frames, *size, channels) if num_views == 1 else (num_views, num_frames, *size, channels)
        return {"inputs": tf.reshape(views, shape), "label": tf.cast(label, tf.int32)}

    hosts = {"process_index": process_index, "process_count": process_count}
    train_ds, train_counts = _host_share(
        *splits["train_files"], **hosts, train=True, shuffle_seed=shuffle_seed
    )
    if train_counts[process_index] == 0:
        raise ValueError(
            f"`train_files` hold {sum(splits['train_files'][1])} videos: none for host "
            f"`process_index` (={process_index}) of `process_count` (={process_count})."
        )
    train_iter = _pipeline.train_pipeline(
        train_ds,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        random_preprocess_fn=train_example,
        shuffle_buffer_size=shuffle_buffer_size,
        cache=cache,
        prefetch=prefetch,
        process_index=process_index,
    )
    test_ds, test_counts = _host_share(*splits["test_files"], **hosts, train=False, shuffle_seed=None)
    test_iter = _pipeline.eval_pipeline(
        test_ds,
        host_counts=test_counts,
        process_index=process_index,
        batch_size=eval_batch_size,
        preprocess_fn=eval_example,
        cache=cache,
        prefetch=prefetch,
    )
    meta_data = MetaData(
        num_classes=num_classes,
        input_shape=(-1, num_frames, *size, channels),
        input_dtype=np.float32,
        num_train_examples=sum(splits["train_files"][1]),
        num_eval_examples=sum(splits["test_files"][1]),
        num_test_views=num_views,
        target_is_onehot=False,
        dataset_name="video_tfrecord",
    )
    return Dataset(train_iter, test_iter, test_iter, meta_data)
