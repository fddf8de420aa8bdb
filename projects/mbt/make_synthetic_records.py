"""Writes the synthetic audio-visual clips as DMVR-layout TFRecords.

    python projects/mbt/make_synthetic_records.py --out workdirs/synthetic_audiovisual

writes `train-00000-of-00001.tfrecord` and `test-00000-of-00001.tfrecord`: the clips of
`synthetic_audiovisual.make_split` (frames as JPEG, spectrograms as
`melspec/feature/floats`), which `get_dataset("audiovisual_tfrecord", audio="spectrogram",
num_mel_bins=16, spectrogram_frames=32, image_size=16, num_frames=8, stride=1, ...)`
reads back.
"""

import argparse
import os

import numpy as np

from scenic_eqx import run

_HERE = os.path.dirname(os.path.abspath(__file__))
_synthetic = run.import_file(os.path.join(_HERE, "synthetic_audiovisual.py"))
_records = run.import_file(os.path.join(_HERE, "audiovisual_records.py"))


def write(out: str, *, num_train: int = 1024, num_test: int = 256, seed: int = 0, **sizes) -> dict[str, str]:
    """Writes both splits into the folder `out`; returns `{split: path}`.

    Arguments:
        out: the folder (created if missing).
        num_train, num_test: clips of each split.
        seed: the clips' seed.
        **sizes: `num_frames`, `image_size`, `spectrogram_frames`, `num_mel_bins` of
            `synthetic_audiovisual.make_split`.
    """
    paths = {}
    for split, count in (("train", num_train), ("test", num_test)):
        inputs, labels = _synthetic.make_split(split, count, seed=seed, **sizes)
        videos = np.round(inputs["rgb"] * 255).astype(np.uint8)
        paths[split] = os.path.join(out, f"{split}-00000-of-00001.tfrecord")
        _records.write_audiovisual_records(
            paths[split], videos, labels.tolist(), spectrograms=inputs["spectrogram"]
        )
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write the records into")
    parser.add_argument("--num_train", type=int, default=1024)
    parser.add_argument("--num_test", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for split, path in write(
        args.out, num_train=args.num_train, num_test=args.num_test, seed=args.seed
    ).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
