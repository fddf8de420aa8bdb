"""Where a ResNet-50 step's convolution time goes on this CPU, per layer shape: XLA's
convolution against `nn.Conv2d`'s formulation (a matrix product for 1x1 kernels and
outputs of at most 4x4).

Every convolution of ResNet-50 v1.5 at 64x64 inputs (batch 16), grouped by shape, timed
forward and backward (gradients of the input and the kernel, as in training) under `vmap`
over the examples, as the models run:

    .venv/bin/python benchmarks/conv_profile.py --repeats 5

Prints, per shape, how many layers of ResNet-50 have it, the median milliseconds of one
layer each way, and the network's total (layers x time) each way.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from scenic_eqx.nn import _conv2d

BATCH, IMAGE = 16, 64


def resnet50_convolutions() -> dict[tuple[int, int, int, int, int], int]:
    """`{(in, out, kernel, stride, input size): count}` of ResNet-50 v1.5 at `IMAGE`."""
    counts: dict[tuple[int, int, int, int, int], int] = {}

    def add(*shape):
        counts[shape] = counts.get(shape, 0) + 1

    add(3, 64, 7, 2, IMAGE)
    size, channels = IMAGE // 4, 64  # after the stem's stride and max pool
    for stage, blocks in enumerate((3, 4, 6, 3)):
        width = 64 * 2**stage
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            add(channels, width, 1, 1, size)
            add(width, width, 3, stride, size)
            add(width, 4 * width, 1, 1, size // stride)
            if block == 0:
                add(channels, 4 * width, 1, stride, size)
            size, channels = size // stride, 4 * width
    return counts


def _milliseconds(shape, as_product: bool, repeats: int) -> float:
    c_in, c_out, kernel, stride, size = shape
    rng = np.random.default_rng(0)
    weight = jnp.asarray(rng.normal(size=(c_out, c_in, kernel, kernel)).astype(np.float32) * 0.05)
    x = jnp.asarray(rng.normal(size=(BATCH, c_in, size, size)).astype(np.float32))
    pad = kernel // 2
    _conv2d.as_product = lambda kernel, output, backend=None: as_product  # the formulation timed

    def loss(weight, x):
        y = jax.vmap(lambda xi: _conv2d.convolve(xi, weight, (stride, stride), ((pad, pad), (pad, pad))))(x)
        return jnp.sum(y * y)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    jax.block_until_ready(grad(weight, x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(grad(weight, x))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    product_rule = _conv2d.as_product
    totals = {"convolution": 0.0, "nn.Conv2d": 0.0}
    print(f"{'in -> out':>12s} kernel stride input  layers  convolution ms  nn.Conv2d ms  (as)")
    for shape, count in resnet50_convolutions().items():
        c_in, c_out, kernel, stride, size = shape
        output = (size + 2 * (kernel // 2) - kernel) // stride + 1
        product = product_rule((kernel, kernel), (output, output), "cpu")
        lax_ms = _milliseconds(shape, False, args.repeats)
        ours_ms = _milliseconds(shape, product, args.repeats) if product else lax_ms
        totals["convolution"] += count * lax_ms
        totals["nn.Conv2d"] += count * ours_ms
        print(
            f"{c_in:5d} -> {c_out:4d} {kernel:4d}x{kernel} {stride:6d} {size:3d}x{size:<3d} {count:5d}"
            f" {lax_ms:15.2f} {ours_ms:13.2f}  ({'product' if product else 'convolution'})",
            flush=True,
        )
    print(
        f"\nResNet-50's convolutions, forward and backward, batch {BATCH} at {IMAGE}x{IMAGE}: "
        f"XLA convolution {totals['convolution']:.0f} ms, nn.Conv2d {totals['nn.Conv2d']:.0f} ms "
        f"({totals['convolution'] / totals['nn.Conv2d']:.1f}x)"
    )


if __name__ == "__main__":
    main()
