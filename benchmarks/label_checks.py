"""Cost of the class-label range check in a training step (ClassificationTask).

    .venv/bin/python benchmarks/label_checks.py --repeats 7 --steps 20

The check reduces the labels to five scalars and branches (`lax.cond`) to a host callback
only when a label is out of range, so a correct batch pays a few reductions over `batch`
integers and one conditional. This times the jitted train step of a small ViT (32x32
images, patch 4, width 192, 6 layers, batch 32, Adam) with the check and with it
replaced by the identity, alternating rounds; prints the median and min-max seconds per
step of each and their ratio.

Measured 2026-11-29 on the 2-core AMD EPYC CPU (jax 0.10.2), shared with other jobs (load
average ~4): checked 0.631 s/step (0.613-0.658), unchecked 0.668 (0.566-0.739), ratio
0.94 over 5 rounds of 10 steps: no cost above the noise.
"""

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from scenic_eqx import loops, nn, tasks
from scenic_eqx.tasks import _classification


def _step_fn(checked: bool):
    original = _classification.check_class_indices
    if not checked:
        _classification.check_class_indices = lambda results, outputs, batch: results
    try:
        model = nn.ViT(10, 4, 192, 6, 3, 768, 32, key=jax.random.key(0))
        optimizer = optax.adam(1e-3)
        state = loops.init_train_state(model, optimizer, key=jax.random.key(1))
        step = eqx.filter_jit(loops.make_train_step(tasks.ClassificationTask(), optimizer))
        rng = np.random.default_rng(0)
        batch = {
            "inputs": jnp.asarray(rng.normal(size=(32, 32, 32, 3)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, 10, 32), jnp.int32),
            "batch_mask": jnp.ones(32),
        }
        jax.block_until_ready(step(state, batch))  # compiled while the patch is in place
    finally:
        _classification.check_class_indices = original
    return step, state, batch


def _time(step, state, batch, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        state, loss, _ = step(state, batch)
    jax.block_until_ready(loss)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    runs = {"checked": _step_fn(True), "unchecked": _step_fn(False)}
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(_time(*run, args.steps))
    for name, values in times.items():
        print(
            f"{name:10s} median {statistics.median(values):.4f} s/step "
            f"(min {min(values):.4f}, max {max(values):.4f})"
        )
    ratio = statistics.median(times["checked"]) / statistics.median(times["unchecked"])
    print(f"ratio checked / unchecked: {ratio:.3f}")


if __name__ == "__main__":
    main()
