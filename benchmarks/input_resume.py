"""Resuming a training input pipeline at step 10,000: restoring its state vs replaying.

`get_dataset("cifar10", batch_size=128)` (the library's pipeline: the split held in
memory, repeat, shuffle with a 10,000-example buffer, pad-4 crop and flip with
per-example stateless seeds, normalise, batch, prefetch 2) on CIFAR-10-shaped data:
50,000 smooth random 32x32x3 uint8 images served by `tfds.testing.mock_data` in place
of the prepared dataset (nothing is downloaded). A trainer resuming at step N needs
batch N+1:

- replay: a fresh pipeline, then `next()` N+1 times (what `loops.fit` did);
- restore: a fresh pipeline, `train_iter.restore_state(dir)` of the state saved after
  batch N, then one `next()`. The script checks that both give the same batch, bitwise.

Both include building the pipeline (reading the split into memory), timed apart as
`build`. The state's size on disk is reported too, and, with `--imagenet`, the size of
an ImageNet pipeline's state (`get_dataset("imagenet2012", image_size=224,
batch_size=128)`) on JPEGs of 500x375 smooth random images, at two shuffle buffer
sizes: the buffered examples (as encoded JPEGs) and the rest (the prefetched float32
batches and the examples decoded in flight).

    .venv/bin/python benchmarks/input_resume.py --steps 10000 --repeats 3 --imagenet

Prints one line per measurement and the medians (min-max) in seconds.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from scenic_eqx import data  # noqa: E402


def _smooth_images(num: int, height: int, width: int, seed: int) -> np.ndarray:
    """Random images with photo-like local correlation (compressible, unlike noise)."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(-6, 7, (num, height, width, 3), dtype=np.int16)
    return np.clip(128 + np.cumsum(steps, axis=2), 0, 255).astype(np.uint8)


def _cifar_source(num_examples: int):
    images = _smooth_images(num_examples, 32, 32, seed=0)
    labels = np.random.default_rng(1).integers(0, 10, num_examples)

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        del self, split, decoders, read_config, shuffle_files
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})

    return as_dataset


def _directory_bytes(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)))


def cifar(steps: int, repeats: int, num_examples: int) -> None:
    options = {"batch_size": 128, "shuffle_seed": 0}
    with tfds.testing.mock_data(as_dataset_fn=_cifar_source(num_examples)):
        state = tempfile.mkdtemp()
        times = {"build": [], "replay": [], "restore": [], "save": []}
        expected = None
        for repeat in range(repeats):
            start = time.perf_counter()
            batches = data.get_dataset("cifar10", **options).train_iter
            built = time.perf_counter()
            for _ in range(steps):
                next(batches)
            skipped = time.perf_counter()
            if repeat == 0:  # the state after batch N, for the restores (not timed)
                batches.save_state(state)
                times["save"].append(time.perf_counter() - skipped)
            resumed = time.perf_counter()
            batch = next(batches)
            replay = (skipped - start) + (time.perf_counter() - resumed)
            times["build"].append(built - start)
            times["replay"].append(replay)
            if expected is None:
                expected = batch
            assert _same(batch, expected), "replays differ"
            print(f"replay {repeat}: build {built - start:.2f} s, total {replay:.2f} s", flush=True)
            del batches

            start = time.perf_counter()
            batches = data.get_dataset("cifar10", **options).train_iter
            built = time.perf_counter()
            batches.restore_state(state)
            batch = next(batches)
            end = time.perf_counter()
            times["build"].append(built - start)
            times["restore"].append(end - start)
            assert _same(batch, expected), "the restored batch differs from the replayed one"
            print(
                f"restore {repeat}: build {built - start:.2f} s, restore + next "
                f"{end - built:.2f} s, total {end - start:.2f} s",
                flush=True,
            )
            del batches
        size = _directory_bytes(state)
        shutil.rmtree(state)
    print(f"\ncifar10, batch 128, shuffle buffer 10,000, resumed at step {steps}:")
    for name, values in times.items():
        print(f"  {name}: median {statistics.median(values):.2f} s "
              f"({min(values):.2f}-{max(values):.2f}, n={len(values)})")  # fmt: skip
    print(f"  state on disk: {size / 2**20:.1f} MiB (saved once)")


def _jpeg_source(num_examples: int):
    jpegs = [
        tf.io.encode_jpeg(image, quality=90).numpy()
        for image in _smooth_images(num_examples, 375, 500, seed=2)
    ]
    labels = np.random.default_rng(3).integers(0, 1000, num_examples)
    mean_bytes = float(np.mean([len(j) for j in jpegs]))

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        del self, split, decoders, read_config, shuffle_files
        return tf.data.Dataset.from_tensor_slices({"image": jpegs, "label": labels})

    return as_dataset, mean_bytes


def imagenet(buffers: tuple[int, ...], num_examples: int, steps: int = 20) -> None:
    as_dataset, mean_bytes = _jpeg_source(num_examples)
    sizes = {}
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        for buffer in buffers:
            batches = data.get_dataset(
                "imagenet2012", batch_size=128, image_size=224, shuffle_buffer_size=buffer
            ).train_iter
            for _ in range(steps):
                next(batches)
            state = tempfile.mkdtemp()
            start = time.perf_counter()
            batches.save_state(state)
            seconds = time.perf_counter() - start
            sizes[buffer] = _directory_bytes(state)
            print(f"imagenet2012, buffer {buffer}: state {sizes[buffer] / 2**20:.1f} MiB, "
                  f"saved in {seconds:.2f} s", flush=True)  # fmt: skip
            shutil.rmtree(state)
            del batches
    print(f"\nimagenet2012, batch 128, 224x224, mean JPEG {mean_bytes / 1024:.1f} KiB:")
    for buffer, size in sizes.items():
        rest = size - buffer * mean_bytes
        print(f"  buffer {buffer}: state {size / 2**20:.1f} MiB = {buffer} JPEGs "
              f"({buffer * mean_bytes / 2**20:.1f} MiB) + {rest / 2**20:.1f} MiB of "
              "prefetched and in-flight decoded examples")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num_examples", type=int, default=50_000)
    parser.add_argument("--imagenet", action="store_true", help="also measure ImageNet's state")
    args = parser.parse_args()
    cifar(args.steps, args.repeats, args.num_examples)
    if args.imagenet:
        imagenet(buffers=(500, 1500), num_examples=2000)


if __name__ == "__main__":
    main()
