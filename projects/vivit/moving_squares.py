"""Synthetic 2-class videos, which way does the square move, and the in-memory dataset of them.

Each video is `num_frames` frames of `size` x `size` noise on which a bright square of
random side (3-5), colour and row crosses the frame one pixel a frame, left to right
(class 0) or right to left (class 1). Both classes visit the same columns, so no single
frame tells them apart: only motion does. Video `i` of a split is a function of
`(seed, split, i)` only.

`make_split` makes the videos (numpy only); `make_synthetic_videos.py` writes them as
DMVR-layout TFRecords, and the dataset `moving_squares` registered here serves them from
memory, through `data.from_arrays`, with nothing written beforehand.
"""

import numpy as np

from scenic_eqx import data

CLASS_NAMES = ("left_to_right", "right_to_left")
_SPLITS = {"train": 0, "test": 1}


def moving_square(label: int, rng: np.random.Generator, *, num_frames: int, size: int) -> np.ndarray:
    """One video, uint8 `[num_frames, size, size, 3]`, of a square moving as `label` says."""
    side = int(rng.integers(3, 6))
    row = int(rng.integers(0, size - side + 1))
    # Positions x, x+1, ...: the whole path fits in the frame (it wraps if the video is
    # longer than the frame is wide).
    span = size - side + 1
    start = int(rng.integers(0, max(span - num_frames + 1, 1)))
    columns = (start + np.arange(num_frames)) % span
    if label == 1:
        columns = span - 1 - columns
    video = rng.integers(0, 60, (num_frames, size, size, 3)).astype(np.uint8)
    colour = rng.integers(160, 256, 3).astype(np.uint8)
    for t, column in enumerate(columns):
        video[t, row : row + side, column : column + side] = colour
    return video


def make_split(
    split: str, num_videos: int, *, seed: int = 0, num_frames: int = 12, size: int = 16
) -> tuple[list[np.ndarray], list[int]]:
    """`(videos, labels)` of `split` (`"train"` or `"test"`): balanced classes, in a fixed order."""
    if split not in _SPLITS:
        raise ValueError(f"`split` must be one of {tuple(_SPLITS)}. Received: {split!r}.")
    videos, labels = [], []
    for index in range(num_videos):
        rng = np.random.default_rng([seed, _SPLITS[split], index])
        label = index % 2
        videos.append(moving_square(label, rng, num_frames=num_frames, size=size))
        labels.append(label)
    return videos, labels


@data.register("moving_squares")
def moving_squares(
    *,
    batch_size: int,
    eval_batch_size: int,
    shuffle_seed: int,
    process_index: int,
    process_count: int,
    num_train: int = 256,
    num_test: int = 64,
    num_frames: int = 8,
    size: int = 16,
    seed: int = 0,
) -> data.Dataset:
    """The moving-square videos, made in memory: `get_dataset("moving_squares", ...)`.

    Every video is one clip of `num_frames` frames (no clip sampling, no cropping, no
    flip: a mirrored clip would move the other way).

    Arguments:
        batch_size, eval_batch_size, shuffle_seed, process_index, process_count: as in
            `data.get_dataset`.
        num_train, num_test: videos of each split.
        num_frames: frames of each video.
        size: side of each frame.
        seed: the videos' seed (the training order is `shuffle_seed`'s).

    Returns:
        A `Dataset` of float32 `inputs` `[batch, num_frames, size, size, 3]` in [0, 1]
        and integer labels (2 classes); `valid_iter` passes over the test videos.
    """
    splits = {}
    for split, count in (("train", num_train), ("test", num_test)):
        videos, labels = make_split(split, count, seed=seed, num_frames=num_frames, size=size)
        splits[split] = (np.stack(videos), np.asarray(labels, np.int32))
    return data.from_arrays(
        splits["train"],
        splits["test"],
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        num_classes=len(CLASS_NAMES),
        shuffle_seed=shuffle_seed,
        process_index=process_index,
        process_count=process_count,
    )
