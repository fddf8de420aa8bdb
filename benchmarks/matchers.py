"""Time of the on-device Hungarian matcher against scipy's on the host, DETR-sized.

`hungarian_jax_matcher` (pure JAX loops, jitted) and `hungarian_matcher` (scipy's
`linear_sum_assignment` through `jax.pure_callback`, jitted) solve the same batches of
DETR matching costs (class probability + L1 + GIoU between random predictions and
random targets, as at the start of training, where matchings are hardest): 100 queries
against 20 targets and against 100, batch 8 and 32.

    .venv/bin/python benchmarks/matchers.py --repeats 7 --calls 10

Both are compiled and warmed up first; then each round times `--calls` calls of one and
then of the other, alternating which goes first, so load from other jobs on a shared
machine spreads over both. It prints the median and min-max milliseconds per call over
the rounds, and the ratio of medians (JAX / scipy; below 1 means the JAX matcher is
faster). It also checks that both reach the same total cost.
"""

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from scenic_eqx.tasks import (
    box_cxcywh_to_xyxy,
    generalized_box_iou,
    hungarian_jax_matcher,
    hungarian_matcher,
)

CONFIGS = [(8, 100, 20), (32, 100, 20), (8, 100, 100), (32, 100, 100)]
NUM_CLASSES = 91


@jax.jit
def _detr_cost(probs, labels, pred_boxes, target_boxes):
    """DETR's matching cost: -p(class) + 5 L1 + 2 (-GIoU) (Carion et al. 2020)."""
    cost_class = -jnp.take_along_axis(probs, labels[:, None, :], axis=-1)
    cost_l1 = jnp.sum(jnp.abs(pred_boxes[:, :, None, :] - target_boxes[:, None, :, :]), axis=-1)
    cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(target_boxes))
    return cost_class + 5.0 * cost_l1 + 2.0 * cost_giou


def _costs(batch, n, m, seed):
    rng = np.random.default_rng(seed)

    def boxes(num):
        centers = rng.uniform(0.1, 0.9, size=(batch, num, 2))
        return np.concatenate([centers, rng.uniform(0.05, 0.4, size=(batch, num, 2))], -1)

    logits = rng.normal(size=(batch, n, NUM_CLASSES))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, NUM_CLASSES, size=(batch, m))
    as_f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return _detr_cost(as_f32(probs), jnp.asarray(labels), as_f32(boxes(n)), as_f32(boxes(m)))


def _total(cost, indices):
    cost, indices = np.asarray(cost), np.asarray(indices)
    return cost[np.arange(len(cost))[:, None], indices[:, 0], indices[:, 1]].sum(-1)


def _time(matcher, costs, calls):
    """Milliseconds per call, cycling through `costs`, waiting for each result."""
    start = time.perf_counter()
    for i in range(calls):
        matcher(costs[i % len(costs)]).block_until_ready()
    return 1e3 * (time.perf_counter() - start) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="alternating rounds")
    parser.add_argument("--calls", type=int, default=10, help="timed calls per round")
    args = parser.parse_args()

    matchers = {"jax": jax.jit(hungarian_jax_matcher), "scipy": jax.jit(hungarian_matcher)}
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    print(f"{'batch x n x m':>15} {'matcher':>7} {'median ms':>10} {'min-max ms':>16}  ratio")
    for batch, n, m in CONFIGS:
        costs = [_costs(batch, n, m, seed) for seed in range(4)]
        for cost in costs:  # Compile, warm up, and check both reach the optimum.
            totals = {name: _total(cost, match(cost)) for name, match in matchers.items()}
            np.testing.assert_allclose(totals["jax"], totals["scipy"], rtol=1e-5, atol=1e-4)
        times = {name: [] for name in matchers}
        for round_ in range(args.repeats):
            order = list(matchers) if round_ % 2 == 0 else list(reversed(matchers))
            for name in order:
                times[name].append(_time(matchers[name], costs, args.calls))
        medians = {name: statistics.median(t) for name, t in times.items()}
        for name, t in times.items():
            ratio = f"{medians['jax'] / medians['scipy']:.2f}" if name == "jax" else ""
            spread = f"{min(t):.2f}-{max(t):.2f}"
            print(f"{f'{batch} x {n} x {m}':>15} {name:>7} {medians[name]:>10.2f} {spread:>16}  {ratio}")


if __name__ == "__main__":
    main()
