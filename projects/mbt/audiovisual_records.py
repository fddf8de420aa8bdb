"""Audio-visual records in the DMVR layout: writing them, parsing them, checking them.

A record is a serialized `tf.train.SequenceExample` holding one video, as DMVR (Alayrac
et al. 2020, github.com/google-deepmind/dmvr) and Scenic's MBT read them:

- `image/encoded`: feature list of JPEG frames, one bytes value each, in order (the
  layout of `scenic_eqx.data.write_video_records`, whose keys and checks are reused);
- `clip/label/index`: context feature, the class (int64): one value, or several for
  multi-label data such as AudioSet;
- the audio, one of
  - `melspec/feature/floats`: feature list of float lists, a log-mel spectrogram in
    time order (each entry one frame of `num_mel_bins` floats, or several frames one
    after another, e.g. one second of 100 frames);
  - `WAVEFORM/feature/floats`: feature list of float lists, the mono waveform's
    samples in order (split over entries as the writer chose).

Importing this module does not import TensorFlow; its functions do.
"""

import os
from collections.abc import Iterable, Sequence

import numpy as np

from scenic_eqx.data import _video_records

IMAGE_KEY = _video_records.IMAGE_KEY
LABEL_KEY = _video_records.LABEL_KEY
AUDIO_KEYS = {"spectrogram": "melspec/feature/floats", "waveform": "WAVEFORM/feature/floats"}


def _labels_of(label: int | Sequence[int], where: str) -> list[int]:
    labels = [label] if isinstance(label, (int, np.integer)) and not isinstance(label, bool) else list(label)
    if not labels or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in labels
    ):
        raise ValueError(
            f"`{where}` must be a non-negative int or a non-empty list of them. Received: {label!r}."
        )
    return [int(v) for v in labels]


def _audio_of(audio: np.ndarray, kind: str, where: str) -> np.ndarray:
    audio = np.asarray(audio)
    rank = 2 if kind == "spectrogram" else 1
    shape = "[frames, num_mel_bins]" if kind == "spectrogram" else "[samples]"
    if audio.ndim != rank or not audio.size or not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(
            f"`{where}` must be a non-empty float array {shape}. Received: {audio.dtype} {audio.shape}."
        )
    return audio.astype(np.float32)


def write_audiovisual_records(
    path: str | os.PathLike,
    videos: Iterable[np.ndarray],
    labels: Iterable[int | Sequence[int]],
    *,
    spectrograms: Iterable[np.ndarray] | None = None,
    waveforms: Iterable[np.ndarray] | None = None,
    jpeg_quality: int = 95,
) -> int:
    """Writes videos, their audio and their labels to one TFRecord file in the DMVR layout.

    Arguments:
        path: the file to write (its folder is created if missing; an existing file is
            replaced).
        videos: uint8 arrays `[time, height, width, channels]`, `channels` 1 or 3.
        labels: the class of each video, an int, or a list of ints (multi-label).
        spectrograms: a float log-mel spectrogram `[frames, num_mel_bins]` per video,
            written one frame per entry of `melspec/feature/floats`.
        waveforms: or a float mono waveform `[samples]` per video, written as one entry
            of `WAVEFORM/feature/floats`. Exactly one of the two.
        jpeg_quality: JPEG quality of the frames, 1..100.

    Returns:
        The number of records written.
    """
    if (spectrograms is None) == (waveforms is None):
        raise ValueError(
            "Give the audio of every video as exactly one of `spectrograms` or `waveforms`. Received: "
            f"spectrograms={'set' if spectrograms is not None else None}, "
            f"waveforms={'set' if waveforms is not None else None}."
        )
    if not (isinstance(jpeg_quality, int) and 1 <= jpeg_quality <= 100):
        raise ValueError(f"`jpeg_quality` must be an int in 1..100. Received: {jpeg_quality!r}.")
    import tensorflow as tf

    kind = "spectrogram" if spectrograms is not None else "waveform"
    videos, labels = list(videos), list(labels)
    audios = list(spectrograms if spectrograms is not None else waveforms)
    if not len(videos) == len(labels) == len(audios):
        raise ValueError(
            f"`videos`, `labels` and the {kind}s must be as many. Received: {len(videos)}, "
            f"{len(labels)} and {len(audios)}."
        )
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for index, (video, label, audio) in enumerate(zip(videos, labels, audios)):
            video = np.asarray(video)
            if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] not in (1, 3) or not len(video):
                raise ValueError(
                    f"`videos[{index}]` must be uint8 [time, height, width, 1 or 3] with time >= 1. "
                    f"Received: {video.dtype} {video.shape}."
                )
            audio = _audio_of(audio, kind, f"{kind}s[{index}]")
            example = tf.train.SequenceExample()
            example.context.feature[LABEL_KEY].int64_list.value.extend(_labels_of(label, f"labels[{index}]"))
            frames = example.feature_lists.feature_list[IMAGE_KEY]
            for frame in video:
                frames.feature.add().bytes_list.value.append(
                    tf.io.encode_jpeg(frame, quality=jpeg_quality).numpy()
                )
            entries = example.feature_lists.feature_list[AUDIO_KEYS[kind]]
            for entry in audio if kind == "spectrogram" else audio[None]:
                entries.feature.add().float_list.value.extend(entry.tolist())
            writer.write(example.SerializeToString())
    return len(videos)


def parse_audiovisual_record(serialized, audio: str):
    """`(frames, samples, labels)` of one record.

    Arguments:
        serialized: the record (a string tensor).
        audio: `"spectrogram"` or `"waveform"`: which audio feature to read.

    Returns:
        JPEG bytes `[num_frames]` (string), the audio feature's floats in order
        `[num_floats]` (float32) and the labels `[num_labels]` (int64).
    """
    import tensorflow as tf

    context, sequence = tf.io.parse_single_sequence_example(
        serialized,
        context_features={LABEL_KEY: tf.io.RaggedFeature(tf.int64)},
        sequence_features={
            IMAGE_KEY: tf.io.FixedLenSequenceFeature([], tf.string),
            AUDIO_KEYS[audio]: tf.io.RaggedFeature(tf.float32),
        },
    )
    return sequence[IMAGE_KEY], sequence[AUDIO_KEYS[audio]].flat_values, context[LABEL_KEY]


def read_audiovisual_info(
    path: str, *, audio: str, num_classes: int, multi_label: bool, num_mel_bins: int = 1
) -> int:
    """Parses every record of `path` once and checks it; returns the number of records.

    Arguments:
        path: a TFRecord file in the layout above.
        audio: `"spectrogram"` or `"waveform"`: the audio feature every record must hold.
        num_classes: labels must lie in `[0, num_classes)`.
        multi_label: whether a record may hold several labels (else exactly one).
        num_mel_bins: a spectrogram's floats must be whole frames of this many bins.

    Raises:
        ValueError: naming the file, the record and what is wrong with it.
    """
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert
    def sizes(serialized):
        frames, floats, labels = parse_audiovisual_record(serialized, audio)
        low = tf.reduce_min(tf.concat([labels, [0]], 0))
        high = tf.reduce_max(tf.concat([labels, [0]], 0))
        return tf.size(frames), tf.size(floats), tf.size(labels), low, high

    rows = []
    try:
        for batch in tf.data.TFRecordDataset(path).map(sizes).batch(4096).as_numpy_iterator():
            rows.append(np.stack(batch, axis=1))
    except tf.errors.DataLossError as error:
        raise ValueError(f"{path!r} is not a readable TFRecord file: {error.message}") from None
    except tf.errors.InvalidArgumentError as error:
        _video_records._diagnose(path)  # names the record without frames or label, if any
        raise ValueError(f"A record of {path!r} does not parse: {error.message}") from None
    info = np.concatenate(rows) if rows else np.zeros((0, 5), np.int64)
    checks = (
        (info[:, 0] == 0, f"has no frames in the feature list {IMAGE_KEY!r}"),
        (info[:, 1] == 0, f"has no audio in the feature list {AUDIO_KEYS[audio]!r}"),
        (
            (audio == "spectrogram") & (info[:, 1] % num_mel_bins != 0),
            f"has a spectrogram of floats that are not whole frames of `num_mel_bins` (={num_mel_bins})",
        ),
        (info[:, 2] == 0, f"has no label in the context feature {LABEL_KEY!r}"),
        (~np.bool_(multi_label) & (info[:, 2] > 1), "has several labels, but `multi_label` is False"),
        (
            (info[:, 3] < 0) | (info[:, 4] >= num_classes),
            f"has a label outside [0, `num_classes` (={num_classes}))",
        ),
    )
    for failed, what in checks:
        if failed.any():
            raise ValueError(f"record {int(np.flatnonzero(failed)[0])} of {path!r} {what}.")
    return len(info)
