"""Writes a 2-class synthetic video dataset in the DMVR layout: which way does the square move?

    python projects/vivit/make_synthetic_videos.py --out workdirs/synthetic_videos

Each video is `--num_frames` frames of `--size` x `--size` noise on which a bright square
of random side, colour and row crosses the frame, left to right (class 0) or right to
left (class 1), one pixel per frame (`moving_squares.make_split`). The square covers the
same positions in both classes, so no single frame tells them apart: only motion does.
Writes `train-00000-of-00001.tfrecord` and `test-00000-of-00001.tfrecord` (see
`scenic_eqx.data.write_video_records`). Video `i` of a split is a function of
`(seed, split, i)` only.
"""

import argparse
import os
import sys

from scenic_eqx import data, run

# The videos themselves are made by `moving_squares.py` beside this file, which the
# in-memory dataset `moving_squares` uses too.
_videos = run.import_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "moving_squares.py"))
CLASS_NAMES = _videos.CLASS_NAMES
make_split = _videos.make_split


def write(
    out: str, *, num_train: int = 256, num_test: int = 64, seed: int = 0, num_frames: int = 12, size: int = 16
) -> dict[str, str]:
    """Writes both splits under `out`; returns `{split: path}`."""
    paths = {}
    for split, count in (("train", num_train), ("test", num_test)):
        paths[split] = os.path.join(out, f"{split}-00000-of-00001.tfrecord")
        videos, labels = make_split(split, count, seed=seed, num_frames=num_frames, size=size)
        data.write_video_records(paths[split], videos, labels)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the TFRecord files")
    parser.add_argument("--num_train", type=int, default=256)
    parser.add_argument("--num_test", type=int, default=64)
    parser.add_argument("--num_frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = write(
        args.out,
        num_train=args.num_train,
        num_test=args.num_test,
        seed=args.seed,
        num_frames=args.num_frames,
        size=args.size,
    )
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
