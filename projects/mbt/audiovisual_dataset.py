"""`audiovisual_tfrecord`: audio-visual classification from DMVR-layout TFRecords.

The records (`audiovisual_records.py`) hold JPEG frames, the audio (a log-mel
spectrogram, or a waveform turned into one here by `log_mel.py`) and the label(s). Every
record is checked once when the dataset is built. A clip is `num_frames` frames `stride`
apart and `spectrogram_frames` spectrogram frames; as DMVR's synchronised sampling does,
both start at the same fraction of their modality's length (random in training; the
middle, or `num_test_clips` fractions spread from start to end, in evaluation). Frames
are resized, cropped (randomly in training, centrally in evaluation) and optionally
flipped, as `video_tfrecord`'s, whose clip ops are reused; a modality shorter than its
clip loops.

Importing this module registers the dataset; TensorFlow is imported when it is built.
"""

import os
from collections.abc import Sequence

import numpy as np

from scenic_eqx import data, run
from scenic_eqx.data._checks import check_positive_int
from scenic_eqx.data._video_records import expand_files

_HERE = os.path.dirname(__file__)
_records = run.import_file(os.path.join(_HERE, "audiovisual_records.py"))


def _offset(fraction, length, clip_length: int, stride: int = 1):
    """The start of a clip at `fraction` (in [0, 1]) of the starts that fit (0 if none fits)."""
    import tensorflow as tf

    span = (clip_length - 1) * stride + 1
    max_offset = tf.maximum(tf.cast(length, tf.int32) - span, 0)
    return tf.cast(tf.round(fraction * tf.cast(max_offset, tf.float32)), tf.int32)


@data.register("audiovisual_tfrecord", overwrite=True)
def audiovisual_tfrecord(
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int,
    process_index: int,
    process_count: int,
    train_files,
    test_files,
    num_classes: int,
    multi_label: bool = False,
    num_frames: int = 32,
    stride: int = 2,
    image_size: int | Sequence[int] = 224,
    min_resize: int | None = None,
    random_flip: bool = True,
    audio: str = "spectrogram",
    spectrogram_frames: int = 800,
    num_mel_bins: int = 128,
    sample_rate: int = 16_000,
    spectrogram_mean: float = 0.0,
    spectrogram_std: float = 1.0,
    num_test_clips: int = 1,
    shuffle_buffer_size: int = 1_000,
    cache: bool = False,
    prefetch: int = 2,
) -> data.Dataset:
    """The `audiovisual_tfrecord` dataset: `get_dataset("audiovisual_tfrecord", ...)`.

    Arguments:
        batch_size, eval_batch_size, shuffle_seed, process_index, process_count: as in
            `data.get_dataset`.
        train_files, test_files: a glob or a list of paths and globs; `valid_iter` and
            `test_iter` both pass over `test_files`.
        num_classes: the number of classes; labels lie in `[0, num_classes)`.
        multi_label: records may hold several labels, given as multi-hot float32
            `[num_classes]` (for `multilabel_classification`); else one, as int32.
        num_frames, stride: the RGB clip: `num_frames` frames `stride` apart.
        image_size: `(height, width)` (or one int) of the crops.
        min_resize: frames are first resized (aspect ratio kept) to this smaller side;
            defaults to the larger side of `image_size`.
        random_flip: mirror training clips left-right with probability 1/2.
        audio: `"spectrogram"` (records hold `melspec/feature/floats`) or
            `"waveform"` (records hold `WAVEFORM/feature/floats`, turned into a log-mel
            spectrogram with 25 ms windows every 10 ms).
        spectrogram_frames, num_mel_bins: the spectrogram clip `[frames, mel]` (100
            frames a second).
        sample_rate: of the waveforms (`audio="waveform"`).
        spectrogram_mean, spectrogram_std: the spectrogram is given as `(x - mean) / std`.
        num_test_clips: evaluation clips per video (their logits are averaged by MBT).
        shuffle_buffer_size, cache, prefetch: as in `video_tfrecord`.

    Returns:
        A `Dataset` whose `inputs` are `{"rgb": float32 [batch, num_frames, height,
        width, channels] in [0, 1], "spectrogram": float32 [batch, spectrogram_frames,
        num_mel_bins]}`; with `num_test_clips > 1` the evaluation entries have a
        `views` axis after the batch axis.
    """
    import tensorflow as tf

    from scenic_eqx.data import _pipeline, _video_clips
    from scenic_eqx.data._image_folder import _image_size
    from scenic_eqx.data._video import _host_share

    num_frames, stride = check_positive_int("num_frames", num_frames), check_positive_int("stride", stride)
    num_classes = check_positive_int("num_classes", num_classes)
    spectrogram_frames = check_positive_int("spectrogram_frames", spectrogram_frames)
    num_mel_bins = check_positive_int("num_mel_bins", num_mel_bins)
    num_test_clips = check_positive_int("num_test_clips", num_test_clips)
    if audio not in _records.AUDIO_KEYS:
        raise ValueError(f"`audio` must be one of {tuple(_records.AUDIO_KEYS)}. Received: {audio!r}.")
    if not spectrogram_std > 0:
        raise ValueError(f"`spectrogram_std` must be positive. Received: {spectrogram_std!r}.")
    size = _image_size(image_size)
    min_resize = max(size) if min_resize is None else check_positive_int("min_resize", min_resize)
    if min_resize < max(size):
        raise ValueError(
            f"`min_resize` (={min_resize}) must be at least the larger side of `image_size` "
            f"(={size}), so that a crop fits. Received: min_resize={min_resize}."
        )
    splits = {}
    for name, patterns in (("train_files", train_files), ("test_files", test_files)):
        files = expand_files(name, patterns)
        check = dict(audio=audio, num_classes=num_classes, multi_label=multi_label, num_mel_bins=num_mel_bins)
        splits[name] = files, [_records.read_audiovisual_info(f, **check) for f in files]

    log_mel = run.import_file(os.path.join(_HERE, "log_mel.py")) if audio == "waveform" else None

    def spectrogram_of(floats: tf.Tensor) -> tf.Tensor:
        if log_mel is not None:
            spectrogram = log_mel.log_mel_spectrogram(
                floats, sample_rate=sample_rate, num_mel_bins=num_mel_bins
            )
        else:
            spectrogram = tf.reshape(floats, [-1, num_mel_bins])
        return (spectrogram - spectrogram_mean) / spectrogram_std

    def label_of(labels: tf.Tensor) -> tf.Tensor:
        if multi_label:
            return tf.reduce_max(tf.one_hot(labels, num_classes, dtype=tf.float32), axis=0)
        return tf.cast(labels[0], tf.int32)

    def clips_at(frames, spectrogram, fractions):
        """RGB clips `[clips, num_frames, h, w, c]` and spectrogram clips at each fraction."""
        num_video_frames, num_spectrogram_frames = tf.shape(frames)[0], tf.shape(spectrogram)[0]
        rgb_indices = tf.map_fn(
            lambda f: _video_clips.clip_indices(
                num_video_frames, _offset(f, num_video_frames, num_frames, stride), num_frames, stride
            ),
            fractions,
            fn_output_signature=tf.int32,
        )
        audio_indices = tf.map_fn(
            lambda f: _video_clips.clip_indices(
                num_spectrogram_frames,
                _offset(f, num_spectrogram_frames, spectrogram_frames),
                spectrogram_frames,
                1,
            ),
            fractions,
            fn_output_signature=tf.int32,
        )
        decoded = _video_clips.decode_frames(tf.gather(frames, tf.reshape(rgb_indices, [-1])), 3)
        rgb = _video_clips.resize_smaller_side(tf.cast(decoded, tf.float32), min_resize) / 255.0
        rgb = tf.reshape(rgb, tf.concat([[fractions.shape[0], num_frames], tf.shape(rgb)[1:]], 0))
        return rgb, tf.gather(spectrogram, audio_indices)

    @tf.autograph.experimental.do_not_convert
    def train_example(record: tf.Tensor, seed: tf.Tensor) -> dict:
        frames, floats, labels = _records.parse_audiovisual_record(record, audio)
        fraction_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        fraction = tf.random.stateless_uniform([1], fraction_seed)
        rgb, spectrogram = clips_at(frames, spectrogram_of(floats), fraction)
        rgb = _video_clips.random_crop_and_flip(rgb[0], size, crop_seed, flip=random_flip)
        inputs = {
            "rgb": tf.ensure_shape(rgb, (num_frames, *size, 3)),
            "spectrogram": tf.ensure_shape(spectrogram[0], (spectrogram_frames, num_mel_bins)),
        }
        return {"inputs": inputs, "label": label_of(labels)}

    @tf.autograph.experimental.do_not_convert
    def eval_example(record: tf.Tensor) -> dict:
        frames, floats, labels = _records.parse_audiovisual_record(record, audio)
        fractions = tf.constant(
            [0.5] if num_test_clips == 1 else np.linspace(0, 1, num_test_clips), tf.float32
        )
        rgb, spectrogram = clips_at(frames, spectrogram_of(floats), fractions)
        rgb = tf.map_fn(
            lambda clip: _video_clips.eval_crops(clip, size, 1)[0],
            rgb,
            fn_output_signature=tf.TensorSpec([num_frames, *size, 3], tf.float32),
        )
        views = () if num_test_clips == 1 else (num_test_clips,)
        inputs = {
            "rgb": tf.reshape(rgb, (*views, num_frames, *size, 3)),
            "spectrogram": tf.reshape(spectrogram, (*views, spectrogram_frames, num_mel_bins)),
        }
        return {"inputs": inputs, "label": label_of(labels)}

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
    meta_data = data.MetaData(
        num_classes=num_classes,
        input_shape=(-1, num_frames, *size, 3),
        input_dtype=np.float32,
        num_train_examples=sum(splits["train_files"][1]),
        num_eval_examples=sum(splits["test_files"][1]),
        num_test_views=num_test_clips,
        target_is_onehot=multi_label,
        dataset_name="audiovisual_tfrecord",
        extra={"spectrogram_shape": (-1, spectrogram_frames, num_mel_bins)},
    )
    return data.Dataset(train_iter, test_iter, test_iter, meta_data)
