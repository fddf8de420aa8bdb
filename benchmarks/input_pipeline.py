"""Is the CIFAR input pipeline fast enough to feed a small ViT on this machine?

Pipeline: 32x32 RGB PNGs (generated, encoded in memory) through the library's training
pipeline (`data._pipeline.train_pipeline`: repeat, shuffle, then per example decode
PNG, pad-4 random crop, random flip, normalise with CIFAR-10's mean/std, each with its
own stateless seed; batch 32, prefetch), as `get_dataset("cifar10")` runs it but with
the PNG decoding that TFDS does inside its reader made part of the timed work.

Consumer: one jitted training step (Adam, softmax cross-entropy) of `nn.ViT` with 32x32
inputs, patch 4, hidden 192, 6 layers, 3 heads, MLP 768, 10 classes, batch 32.

    .venv/bin/python benchmarks/input_pipeline.py --repeats 5

Each measurement runs in a fresh process and the two alternate, so that load from
other jobs on a shared machine spreads over both; the driver prints the median and
min-max images/s of each and the ratio of the medians (target: pipeline >= 3x the
step). `--worker pipeline|vit` runs one measurement and prints `images_per_sec`.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

BATCH, IMAGE, PATCH, HIDDEN, LAYERS, HEADS, MLP, CLASSES = 32, 32, 4, 192, 6, 3, 768, 10
NUM_IMAGES = 2048


def pipeline(num_batches: int) -> float:
    """Images per second out of the training pipeline, after a warm-up."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from scenic_eqx.data import _pipeline, ops

    rng = np.random.default_rng(0)
    # Smooth random images: PNG-compressible like photographs, unlike white noise.
    noise = rng.integers(-8, 9, (NUM_IMAGES, IMAGE, IMAGE, 3))
    images = np.clip(128 + np.cumsum(noise, axis=2), 0, 255).astype(np.uint8)
    pngs = [tf.io.encode_png(image).numpy() for image in images]
    labels = rng.integers(0, CLASSES, NUM_IMAGES)
    ds = tf.data.Dataset.from_tensor_slices({"image": pngs, "label": labels})

    def train_example(example, seed):
        crop_seed, flip_seed = tf.unstack(ops.split_seed(seed))
        image = tf.ensure_shape(ops.decode(example["image"]), (IMAGE, IMAGE, 3))
        image = ops.random_crop_with_pad(image, seed=crop_seed, pad=4)
        image = ops.random_flip(image, seed=flip_seed)
        image = ops.normalize(ops.value_range(image), ops.CIFAR10_MEAN, ops.CIFAR10_STD)
        return {"inputs": image, "label": tf.cast(example["label"], tf.int32)}

    batches = _pipeline.train_pipeline(ds, batch_size=BATCH, random_preprocess_fn=train_example, cache=False)
    for _ in range(20):  # fills the shuffle buffer and lets tf.data tune itself
        next(batches)
    start = time.perf_counter()
    for _ in range(num_batches):
        batch = next(batches)
    assert batch["inputs"].shape == (BATCH, IMAGE, IMAGE, 3)
    return num_batches * BATCH / (time.perf_counter() - start)


def vit(steps: int) -> float:
    """Images per second through one jitted ViT training step, after compiling."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from scenic_eqx import nn

    model = nn.ViT(CLASSES, PATCH, HIDDEN, LAYERS, HEADS, MLP, IMAGE, key=jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimizer = optax.adam(1e-4)

    def loss_fn(params, images, labels):
        logits = jax.vmap(eqx.combine(params, static), axis_name="batch")(images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step(params, opt_state, images, labels):
        grads = jax.grad(loss_fn)(params, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.standard_normal((BATCH, IMAGE, IMAGE, 3), dtype=np.float32))
    labels = jnp.asarray(rng.integers(0, CLASSES, BATCH).astype(np.int32))
    state = (params, optimizer.init(params))
    for _ in range(3):
        state = step(*state, images, labels)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state = step(*state, images, labels)
    jax.block_until_ready(state)
    return steps * BATCH / (time.perf_counter() - start)


def _run_worker(name: str, args) -> float:
    command = [sys.executable, __file__, "--worker", name]
    command += ["--batches", str(args.batches), "--steps", str(args.steps)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(out.split("images_per_sec=")[1].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=200, help="timed pipeline batches")
    parser.add_argument("--steps", type=int, default=20, help="timed ViT steps")
    parser.add_argument("--worker", choices=("pipeline", "vit"))
    args = parser.parse_args()
    if args.worker:
        rate = pipeline(args.batches) if args.worker == "pipeline" else vit(args.steps)
        print(f"images_per_sec={rate:.2f}")
        return
    rates = {"pipeline": [], "vit": []}
    for repeat in range(args.repeats):
        for name in rates:
            rates[name].append(_run_worker(name, args))
            print(f"round {repeat + 1}: {name} {rates[name][-1]:.1f} images/s", flush=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, values in rates.items():
        print(f"{name}: median {medians[name]:.1f} images/s (min {min(values):.1f}, max {max(values):.1f})")
    print(f"ratio pipeline / vit = {medians['pipeline'] / medians['vit']:.1f}")


if __name__ == "__main__":
    main()
