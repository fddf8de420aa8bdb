"""Host overhead of `loops.fit`: steps/s against a bare `jax.jit` loop on the same batches.

A tiny MLP makes each step cheap, so what is measured is the loop around it: getting
the batch onto the devices, the call into the compiled step, metric bookkeeping.
Both loops start from the same in-memory numpy batches and run the same optimizer.

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 .venv/bin/python benchmarks/fit_overhead.py

Prints the median steps/s of each (runs alternate) and the ratios of fit to the bare
loops: one computing the loss only, one computing the same loss and metrics as `fit`;
and the per-step overhead of `fit` over the bare loop with one step per dispatch and
with eight (`steps_per_dispatch=8`: a `lax.scan` over stacked batches). `fit`'s times
include its compilation (its steps are compiled anew in each call), so use enough
steps that it is small.
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


def make_batches(num_steps, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "inputs": rng.normal(size=(batch_size, 8, 8, 1)).astype(np.float32),
            "label": rng.integers(0, 10, size=batch_size).astype(np.int32),
            "batch_mask": np.ones(batch_size, np.float32),
        }
        for _ in range(num_steps)
    ]


def bare_loop(model, batches, optimizer, task=None):
    """The reference: a jitted, donated step on partitioned parameters; no logging.

    With a `task`, the step computes the same loss and metrics as `fit`'s (summed on the
    device, as `fit` does), so that the two differ only by the loop around the step.
    """
    params, static = eqx.partition(model, eqx.is_inexact_array)
    params = jax.tree.map(jnp.copy, params)  # donated below: keep the caller's model intact
    opt_state = optimizer.init(params)

    def step(params, opt_state, sums, batch):
        def loss_fn(params):
            logits = jax.vmap(eqx.combine(params, static))(batch["inputs"])
            if task is None:
                loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            else:
                loss = task.loss(logits, batch)
            return loss, logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        if task is not None:
            sums = jax.tree.map(jnp.add, sums, task.metrics(logits, batch))
        return optax.apply_updates(params, updates), opt_state, sums

    step = jax.jit(step, donate_argnums=(0, 1, 2))
    sums = None
    if task is not None:
        shapes = jax.eval_shape(lambda: task.metrics(jnp.zeros((len(batches[0]["label"]), 10)), batches[0]))
        sums = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    start = time.perf_counter()
    for batch in batches:
        params, opt_state, sums = step(params, opt_state, sums, batch)
    jax.block_until_ready(params)
    return time.perf_counter() - start


def fit_loop(model, batches, optimizer, steps_per_dispatch=1):
    start = time.perf_counter()
    state, _ = loops.fit(
        model,
        tasks.ClassificationTask(),
        batches,
        optimizer=optimizer,
        num_steps=len(batches),
        key=jax.random.key(0),
        log_every=200,
        progress=False,
        steps_per_dispatch=steps_per_dispatch,
    )
    jax.block_until_ready(state.model)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = nn.FullyConnected(10, input_shape=(8, 8, 1), hidden_sizes=(128,), key=jax.random.key(0))
    optimizer = optax.adam(1e-3)
    batches = make_batches(args.steps, args.batch_size)
    task = tasks.ClassificationTask()
    runs = {
        "bare jax.jit loop (loss only)": lambda b: bare_loop(model, b, optimizer),
        "bare jax.jit loop (same loss + metrics)": lambda b: bare_loop(model, b, optimizer, task),
        "loops.fit": lambda b: fit_loop(model, b, optimizer),
        "loops.fit, steps_per_dispatch=8": lambda b: fit_loop(model, b, optimizer, 8),
    }
    for run in runs.values():  # compile outside the timings (fit compiles anew: see below)
        run(batches[:8])
    rates = {name: [] for name in runs}
    for _ in range(args.repeats):  # alternate, so that load changes hit every loop alike
        for name, run in runs.items():
            rates[name].append(args.steps / run(batches))
    print(
        f"devices: {jax.device_count()} x {jax.devices()[0].platform}; steps: {args.steps}; batch: {args.batch_size}"
    )
    for name, values in rates.items():
        median = statistics.median(values)
        print(
            f"{name:>40}: {median:8.1f} steps/s (min {min(values):.1f}, max {max(values):.1f}); "
            f"{1e3 / median:.3f} ms/step"
        )
    bare = statistics.median(rates["bare jax.jit loop (same loss + metrics)"])
    for name in ("loops.fit", "loops.fit, steps_per_dispatch=8"):
        fit = statistics.median(rates[name])
        print(
            f"{name}: ratio to the bare loop with metrics {fit / bare:.3f}; "
            f"overhead {1e3 / fit - 1e3 / bare:+.3f} ms/step"
        )
    for name in list(runs)[:2]:
        fit = statistics.median(rates["loops.fit"])
        print(f"ratio fit / {name}: {fit / statistics.median(rates[name]):.3f}")


if __name__ == "__main__":
    main()
