"""Training steps per second of the TokenLearner ViT against the plain ViT of the same size.

    .venv/bin/python projects/tokenlearner/throughput.py --repeats 5 --steps 50

times one training step (forward, backward, Adam update; batch 64, jitted once, buffers
donated) of each model of `configs/digits.py` (`:vit`, the default TokenLearner ViT and
`:fuser`), each measurement in a fresh process, the models alternating, and prints the
median steps/s of each with the min-max and the ratio to the plain ViT. `--patch_size`
sets the models' patch size (1: 64 pixel tokens, the configs' default; 2: 16 tokens).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

VARIANTS = ("vit", "tokenlearner", "fuser")
_HERE = os.path.dirname(os.path.abspath(__file__))


def steps_per_second(variant: str, steps: int, patch_size: int) -> float:
    """Steps/s of `configs/digits.py:VARIANT` on random digits-shaped batches."""
    import equinox as eqx
    import jax
    import numpy as np
    import optax

    from scenic_eqx import nn, run

    config = run.load_config(os.path.join(_HERE, "configs", f"digits.py:{variant}"))
    model_kwargs = {**config.model.to_dict(), "patch_size": patch_size}
    model = nn.create(config.model_name, num_classes=10, key=jax.random.key(0), **model_kwargs)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimizer = optax.adam(1e-3)
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(config.batch_size, 8, 8, 1)).astype(np.float32)
    labels = rng.integers(0, 10, config.batch_size).astype(np.int32)

    def loss_fn(params, images, labels):
        logits = jax.vmap(eqx.combine(params, static))(images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @eqx.filter_jit(donate="all-except-first")
    def step(images, params, opt_state):
        grads = jax.grad(loss_fn)(params, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    state = (params, optimizer.init(params))
    for _ in range(3):
        state = step(images, *state)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state = step(images, *state)
    jax.block_until_ready(state)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--patch_size", type=int, default=1)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(steps_per_second(args.worker, args.steps, args.patch_size))
        return
    rates = {variant: [] for variant in VARIANTS}
    for repeat in range(args.repeats):
        for variant in VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]:
            command = [sys.executable, __file__, "--worker", variant, "--steps", str(args.steps)]
            command += ["--patch_size", str(args.patch_size)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rates[variant].append(float(out.strip().splitlines()[-1]))
            print(f"repeat {repeat} {variant:12s} {rates[variant][-1]:.1f} steps/s", flush=True)
    vit = statistics.median(rates["vit"])
    print(
        f"\nsteps/s, median (min-max) of {args.repeats} runs x {args.steps} steps, patch {args.patch_size}:"
    )
    for variant, values in rates.items():
        median = statistics.median(values)
        print(
            f"{variant:12s} {median:7.1f} ({min(values):.1f}-{max(values):.1f})  x{median / vit:.2f} the ViT"
        )


if __name__ == "__main__":
    main()
