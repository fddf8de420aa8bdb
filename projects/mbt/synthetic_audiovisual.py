"""Synthetic audio-visual clips whose class neither modality decides alone, and their dataset.

Each example is a clip of `num_frames` RGB frames in which a bright square crosses the
frame left to right or right to left (one pixel a frame, over noise), and a log-mel-like
spectrogram `[spectrogram_frames, num_mel_bins]` in which a tone sounds for a while in
the lower or the upper half of the mel bins (over noise). The class is the pair:

    label = 2 * direction + pitch      direction: 0 left to right, 1 right to left
                                       pitch:     0 low, 1 high

The frames are drawn from a random stream of their own, a function of the example and
of `direction` only, and the spectrogram from another, a function of the example and of
`pitch` only: the frames say nothing about the pitch and the sound nothing about the
direction. Classes are balanced, so a model that sees one modality can tell only two
of the four classes apart: its Bayes accuracy is 50%, while both modalities decide the
class (100%). Both directions visit the same columns, so only motion tells them apart.

Example `i` of a split is a function of `(seed, split, i)` alone. `make_split` makes a
split (numpy only); `make_synthetic_records.py` writes it as DMVR-layout TFRecords; the
dataset `synthetic_audiovisual` registered here serves it from memory.
"""

import numpy as np

from scenic_eqx import data
from scenic_eqx.data import _in_memory

DIRECTIONS = ("left_to_right", "right_to_left")
PITCHES = ("low", "high")
CLASS_NAMES = tuple(f"{direction}, {pitch} tone" for direction in DIRECTIONS for pitch in PITCHES)
_SPLITS = {"train": 0, "test": 1}
_RGB_STREAM, _AUDIO_STREAM = 0, 1
# Mel bins left out on either side of the middle, so that low and high never touch.
_PITCH_GAP = 1


def label_of(direction: int, pitch: int) -> int:
    """The class of a clip with this motion `direction` and tone `pitch` (0 or 1 each)."""
    return 2 * direction + pitch


def direction_and_pitch(label: int) -> tuple[int, int]:
    """`(direction, pitch)` of class `label`: the inverse of `label_of`."""
    return divmod(label, 2)


def moving_square(direction: int, rng: np.random.Generator, *, num_frames: int, size: int) -> np.ndarray:
    """Float32 frames `[num_frames, size, size, 3]` in [0, 1] of a square moving as `direction` says."""
    side = int(rng.integers(3, 6))
    row = int(rng.integers(0, size - side + 1))
    span = size - side + 1  # the columns the square's left edge can take
    start = int(rng.integers(0, max(span - num_frames + 1, 1)))
    columns = (start + np.arange(num_frames)) % span
    if direction == 1:
        columns = columns[::-1]  # the same path, the other way
    frames = rng.uniform(0.0, 0.25, (num_frames, size, size, 3))
    colour = rng.uniform(0.65, 1.0, 3)
    for t, column in enumerate(columns):
        frames[t, row : row + side, column : column + side] = colour
    return frames.astype(np.float32)


def tone(pitch: int, rng: np.random.Generator, *, num_frames: int, num_mel_bins: int) -> np.ndarray:
    """Float32 spectrogram `[num_frames, num_mel_bins]`: noise, and a tone in the `pitch` half.

    The tone holds one mel bin, drawn in the lower half (`pitch` 0) or the upper half (1)
    of the bins, with a little energy leaking into its neighbours, from a random onset
    for at least half of the frames.
    """
    half = num_mel_bins // 2
    low, high = (0, half - _PITCH_GAP) if pitch == 0 else (half + _PITCH_GAP, num_mel_bins)
    mel_bin = int(rng.integers(low, high))
    length = int(rng.integers((num_frames + 1) // 2, num_frames + 1))
    onset = int(rng.integers(0, num_frames - length + 1))
    spectrogram = rng.normal(0.0, 0.5, (num_frames, num_mel_bins))
    loudness = rng.uniform(2.0, 3.0)
    spectrogram[onset : onset + length, mel_bin] += loudness
    for neighbour in (mel_bin - 1, mel_bin + 1):
        if 0 <= neighbour < num_mel_bins:
            spectrogram[onset : onset + length, neighbour] += 0.3 * loudness
    return spectrogram.astype(np.float32)


def make_example(
    label: int, *, seed: int, split: str, index: int, num_frames: int, image_size: int, spectrogram_frames: int,
    num_mel_bins: int,
) -> dict[str, np.ndarray]:  # fmt: skip
    """`{"rgb", "spectrogram"}` of example `index` of `split` with class `label`."""
    direction, pitch = direction_and_pitch(label)
    where = [seed, _SPLITS[split], index]
    rgb_rng = np.random.default_rng([*where, _RGB_STREAM])
    audio_rng = np.random.default_rng([*where, _AUDIO_STREAM])
    return {
        "rgb": moving_square(direction, rgb_rng, num_frames=num_frames, size=image_size),
        "spectrogram": tone(pitch, audio_rng, num_frames=spectrogram_frames, num_mel_bins=num_mel_bins),
    }


def make_split(
    split: str,
    count: int,
    *,
    seed: int = 0,
    num_frames: int = 8,
    image_size: int = 16,
    spectrogram_frames: int = 32,
    num_mel_bins: int = 16,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`(inputs, labels)` of `split` (`"train"` or `"test"`): every class `count / 4` times
    (cycling through the classes), in a fixed order.

    Returns:
        `inputs`: `{"rgb": float32 [count, num_frames, image_size, image_size, 3],
        "spectrogram": float32 [count, spectrogram_frames, num_mel_bins]}`; `labels`:
        int32 `[count]` in `0..3`.
    """
    if split not in _SPLITS:
        raise ValueError(f"`split` must be one of {tuple(_SPLITS)}. Received: {split!r}.")
    if not (isinstance(count, int) and count > 0):
        raise ValueError(f"`count` must be a positive int. Received: {count!r}.")
    if image_size < 8 or num_frames < 2:
        raise ValueError(
            f"`image_size` must be at least 8 and `num_frames` at least 2, for a square to move. "
            f"Received: image_size={image_size}, num_frames={num_frames}."
        )
    if num_mel_bins < 4 * (1 + _PITCH_GAP):
        raise ValueError(f"`num_mel_bins` must be at least {4 * (1 + _PITCH_GAP)}. Received: {num_mel_bins}.")
    sizes = dict(num_frames=num_frames, image_size=image_size, spectrogram_frames=spectrogram_frames)
    labels = np.arange(count, dtype=np.int32) % len(CLASS_NAMES)
    examples = [
        make_example(int(label), seed=seed, split=split, index=i, num_mel_bins=num_mel_bins, **sizes)
        for i, label in enumerate(labels)
    ]
    inputs = {m: np.stack([example[m] for example in examples]) for m in ("rgb", "spectrogram")}
    return inputs, labels


@data.register("synthetic_audiovisual", overwrite=True)
def synthetic_audiovisual(
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int,
    process_index: int,
    process_count: int,
    num_train: int = 512,
    num_test: int = 128,
    num_frames: int = 8,
    image_size: int = 16,
    spectrogram_frames: int = 32,
    num_mel_bins: int = 16,
    seed: int = 0,
    multi_hot: bool = False,
) -> data.Dataset:
    """The synthetic audio-visual clips, made in memory: `get_dataset("synthetic_audiovisual", ...)`.

    Arguments:
        batch_size, eval_batch_size, shuffle_seed, process_index, process_count: as in
            `data.get_dataset`.
        num_train, num_test: clips of each split.
        num_frames, image_size: the RGB frames of a clip.
        spectrogram_frames, num_mel_bins: its spectrogram.
        seed: the clips' seed (the training order is `shuffle_seed`'s).
        multi_hot: give each label as float32 `[4]` with one 1, for
            `multilabel_classification` (as AudioSet's labels are given).

    Returns:
        A `Dataset` whose `inputs` are `{"rgb": float32 [batch, num_frames, image_size,
        image_size, 3] in [0, 1], "spectrogram": float32 [batch, spectrogram_frames,
        num_mel_bins]}`, with int32 labels in `0..3` (`CLASS_NAMES`), or their one-hot
        vectors; `valid_iter` passes over the test clips.
    """
    sizes = dict(
        seed=seed,
        num_frames=num_frames,
        image_size=image_size,
        spectrogram_frames=spectrogram_frames,
        num_mel_bins=num_mel_bins,
    )
    train_inputs, train_labels = make_split("train", num_train, **sizes)
    test_inputs, test_labels = make_split("test", num_test, **sizes)
    if multi_hot:
        train_labels, test_labels = (
            np.eye(len(CLASS_NAMES), dtype=np.float32)[y] for y in (train_labels, test_labels)
        )
    hosts = {"process_index": process_index, "process_count": process_count}
    train_iter = _in_memory.train_batches(
        {"inputs": train_inputs, "label": train_labels},
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        state_spec={
            "dataset": "synthetic_audiovisual",
            **sizes,
            "num_train": num_train,
            "multi_hot": multi_hot,
        },
        **hosts,
    )
    test_iter = _in_memory.EvalBatches(
        {"inputs": test_inputs, "label": test_labels}, batch_size=eval_batch_size, **hosts
    )
    meta_data = data.MetaData(
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        input_shape=(-1, num_frames, image_size, image_size, 3),
        input_dtype=np.float32,
        num_train_examples=num_train,
        num_eval_examples=num_test,
        dataset_name="synthetic_audiovisual",
        target_is_onehot=multi_hot,
        extra={"spectrogram_shape": (-1, spectrogram_frames, num_mel_bins)},
    )
    return data.Dataset(train_iter, test_iter, test_iter, meta_data)
