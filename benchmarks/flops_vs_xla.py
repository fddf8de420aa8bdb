"""`nn.forward_flops` against XLA's cost analysis, at the models' real sizes (224x224).

For each model it prints the analytic FLOPs of one example's forward pass and XLA's
`compiled.cost_analysis()["flops"]` per example of the same forward pass, jitted and
vmapped over a batch (the unrolled model), with the relative difference and the ratio analytic / XLA; then the same
for the model with `scan_layers=True`, where XLA counts the scanned encoder once.

    .venv/bin/python benchmarks/flops_vs_xla.py
    .venv/bin/python benchmarks/flops_vs_xla.py --models vit_b16 resnet50

Models are built abstractly (`eqx.filter_eval_shape`: no weights drawn) and only
compiled, never run. BiT standardises its kernels once per batch, so its per-example
figure is the difference of two batch sizes. XLA counts what the compiled program runs:
where fusion duplicates a cheap elementwise op into several consumers it is counted
once per copy, which is most of the gap on ResNets.
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from scenic_eqx import nn
from scenic_eqx.nn._conv2d import as_convolutions

MODELS = ["vit_b16", "mixer_b16", "resnet18", "resnet50", "bit_r50x1"]
INPUT_SHAPE = (224, 224, 3)


def xla_flops(model: eqx.Module, batch: int) -> float:
    """XLA's FLOPs per example of the batched forward pass; parameters as arguments."""
    is_leaf = lambda x: isinstance(x, jax.ShapeDtypeStruct) or eqx.is_array(x)  # noqa: E731
    params, static = eqx.partition(model, is_leaf)
    x = jax.ShapeDtypeStruct((batch, *INPUT_SHAPE), jnp.float32)
    if isinstance(model, nn.ResNet):

        def forward(params, x, state):
            apply = eqx.combine(params, static)
            return jax.vmap(apply, (0, None), (0, None), axis_name="batch")(x, state)[0]

        args = (params, x, eqx.filter_eval_shape(eqx.nn.State, model))
    else:

        def forward(params, x):
            return jax.vmap(eqx.combine(params, static), axis_name="batch")(x)

        args = (params, x)
    # Convolutions as XLA's (not `nn.Conv2d`'s CPU products, whose windows XLA fuses
    # with their BatchNorm and ReLU and counts those once per window).
    with as_convolutions():
        compiled = jax.jit(forward).lower(*args).compile()
    return compiled.cost_analysis()["flops"] / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    args = parser.parse_args()
    key = jax.random.key(0)
    print(f"{'model':<20} {'analytic':>16} {'XLA':>16} {'difference':>10} {'ratio':>6} {'compile s':>9}")
    for name in args.models:
        variants = [(name, {})]
        if name.startswith("vit"):
            variants.append((f"{name} scan_layers", {"scan_layers": True}))
        for label, overrides in variants:
            model = eqx.filter_eval_shape(nn.create, name, num_classes=1000, key=key, **overrides)
            start = time.perf_counter()
            if name.startswith("bit"):
                xla = 2 * xla_flops(model, 4) - xla_flops(model, 2)
            else:
                xla = xla_flops(model, 1 if name.startswith(("vit", "mixer")) else 2)
            seconds = time.perf_counter() - start
            analytic = nn.forward_flops(model, INPUT_SHAPE)
            print(
                f"{label:<20} {analytic:>16,} {xla:>16,.0f} {(analytic - xla) / xla:>+10.2%} "
                f"{analytic / xla:>6.2f} {seconds:>9.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
