"""First-step compile time and compiled memory of training steps: scenic_eqx against Flax linen.

For ViT-B/16 (224x224), ResNet-50 (224x224) and DETR-R50 (320x320, 100 queries, 20 boxes
per image), batch 8, float32 (or `--precision bfloat16`), one training step (forward,
the task's loss, gradient, Adam update; the train state donated) of the scenic_eqx model
(`loops.make_train_step`, the step `loops.fit` runs) and of the same network written in
Flax linen (`linen_models.py`) with the same loss (the scenic_eqx task's, applied to the
Flax outputs). Each step is lowered and compiled, never run, so any size fits: the time
to trace and lower it, the time to compile it, and XLA's `memory_analysis()` of the
compiled step (argument, output, aliased and temporary bytes). Every measurement is a
fresh process with no compilation cache, and the implementations alternate, so that load
from other jobs falls on all of them; memory does not depend on the load, times do.

    .venv/bin/pip install -c constraints.txt -e '.[bench]'     # flax
    .venv/bin/python benchmarks/compile_memory.py --repeats 3
    .venv/bin/python benchmarks/compile_memory.py --models vit --impls scenic_eqx,flax_linen

`scenic_eqx_scan` is `nn.ViT(..., scan_layers=True)`: the blocks run as one `lax.scan`
body, traced and compiled once instead of 12 times. `--size tiny` compiles small
versions of the three networks (a check that the script runs).
`--worker MODEL IMPL` runs one measurement and prints it as a JSON line.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import linen_models
from architectures import VIT_B16

MODELS = ("vit", "resnet", "detr")
IMPLS = {"vit": ("scenic_eqx", "scenic_eqx_scan", "flax_linen"), "resnet": ("scenic_eqx", "flax_linen"),
         "detr": ("scenic_eqx", "flax_linen")}  # fmt: skip
MAX_BOXES = 20  # ground-truth boxes per image in the DETR batch (padded, with `box_mask`)

# name: (image side, number of classes, scenic_eqx constructor arguments); the linen
# models take the same sizes.
SIZES = {
    "full": {
        "vit": (224, 1000, VIT_B16),
        "resnet": (224, 1000, {"depth": 50}),
        "detr": (320, 91, {"num_queries": 100}),
    },
    "tiny": {
        "vit": (32, 10, {"patch_size": 8, "hidden_size": 64, "num_layers": 2, "num_heads": 2, "mlp_dim": 128}),
        "resnet": (32, 10, {"depth": 26, "width": 8}),
        "detr": (64, 10, {"num_queries": 10, "dim": 32, "num_heads": 2, "mlp_dim": 64, "num_encoder_layers": 2,
                          "num_decoder_layers": 2, "backbone_depth": 26, "backbone_width": 8}),
    },
}  # fmt: skip


def abstract_batch(model: str, size: str, batch_size: int) -> dict:
    """`jax.ShapeDtypeStruct`s of a training batch for `model`: images, labels, `batch_mask`."""
    import jax
    import jax.numpy as jnp

    image = SIZES[size][model][0]
    array = jax.ShapeDtypeStruct
    if model == "detr":
        label = {
            "boxes": array((batch_size, MAX_BOXES, 4), jnp.float32),
            "labels": array((batch_size, MAX_BOXES), jnp.int32),
            "box_mask": array((batch_size, MAX_BOXES), jnp.float32),
        }
    else:
        label = array((batch_size,), jnp.int32)
    return {
        "inputs": array((batch_size, image, image, 3), jnp.float32),
        "label": label,
        "batch_mask": array((batch_size,), jnp.float32),
    }


def _task(model: str):
    from scenic_eqx import tasks

    return tasks.DetectionTask() if model == "detr" else tasks.ClassificationTask()


def scenic_eqx_step(model: str, size: str, batch_size: int, precision: str, scan_layers: bool = False):
    """The jitted scenic_eqx step and its abstract arguments `(train_state_arrays, batch)`."""
    import equinox as eqx
    import jax
    import optax

    from scenic_eqx import loops, nn

    _, num_classes, kwargs = SIZES[size][model]
    image = SIZES[size][model][0]
    optimizer = optax.adam(1e-4)

    def build(key):
        if model == "vit":
            net = nn.ViT(num_classes, **kwargs, image_size=image, scan_layers=scan_layers, key=key)
        elif model == "resnet":
            net = nn.ResNet(num_classes, **kwargs, key=key)
        else:
            net = nn.DETR(num_classes, **kwargs, key=key)
        return loops.init_train_state(net, optimizer, key=key)

    state = eqx.filter_eval_shape(build, jax.random.key(0))
    is_abstract = lambda x: isinstance(x, jax.ShapeDtypeStruct)
    arrays, static = eqx.partition(state, is_abstract)
    train_step = loops.make_train_step(_task(model), optimizer, precision=precision)

    def step(arrays, batch):
        new_state, loss, _ = train_step(eqx.combine(arrays, static), batch)
        return eqx.filter(new_state, eqx.is_array), loss

    return jax.jit(step, donate_argnums=0), (arrays, abstract_batch(model, size, batch_size))


def flax_linen_step(model: str, size: str, batch_size: int, precision: str):
    """The jitted Flax linen step and its abstract arguments `(params, batch_stats,
    opt_state, key, batch)`: the same network, loss and optimizer as `scenic_eqx_step`."""
    import jax
    import jax.numpy as jnp
    import optax

    image, num_classes, kwargs = SIZES[size][model]
    dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
    if model == "vit":
        net = linen_models.ViT(num_classes, **kwargs, dtype=dtype)
    elif model == "resnet":
        net = linen_models.ResNet(num_classes, **kwargs, dtype=dtype)
    else:
        net = linen_models.DETR(num_classes, **kwargs, dtype=dtype)
    task = _task(model)
    optimizer = optax.adam(1e-4)
    example = jnp.zeros((1, image, image, 3))
    variables = jax.eval_shape(lambda key: net.init(key, example, train=False), jax.random.key(0))
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    opt_state = jax.eval_shape(optimizer.init, params)

    def loss_fn(params, batch_stats, batch, key):
        outputs, updates = net.apply(
            {"params": params, "batch_stats": batch_stats},
            batch["inputs"],
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        outputs = jax.tree.map(lambda x: x.astype(jnp.float32), outputs)  # losses in float32
        return task.loss(outputs, batch), updates.get("batch_stats", {})

    def step(params, batch_stats, opt_state, key, batch):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch_stats, batch, key
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    key = jax.eval_shape(lambda: jax.random.key(1))
    arguments = (params, batch_stats, opt_state, key, abstract_batch(model, size, batch_size))
    return jax.jit(step, donate_argnums=(0, 1, 2)), arguments


def measure(model: str, impl: str, size: str, batch_size: int, precision: str) -> dict:
    """Lowers and compiles one step; seconds and `memory_analysis()` bytes."""
    start = time.perf_counter()
    if impl == "flax_linen":
        step, arguments = flax_linen_step(model, size, batch_size, precision)
    else:
        step, arguments = scenic_eqx_step(model, size, batch_size, precision, impl == "scenic_eqx_scan")
    lowered = step.lower(*arguments)
    traced = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    memory = compiled.memory_analysis()
    stats = {
        name: getattr(memory, f"{name}_size_in_bytes")
        for name in ("argument", "output", "alias", "temp", "generated_code")
    }
    # What the step holds at once: its arguments, the outputs not written into donated
    # arguments, and its temporaries.
    stats["total"] = stats["argument"] + stats["output"] - stats["alias"] + stats["temp"]
    return {"lower_s": traced - start, "compile_s": done - traced, **stats}


def _run_worker(model: str, impl: str, args) -> dict:
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # every measurement compiles from scratch
    command = [sys.executable, __file__, "--worker", model, impl, "--size", args.size,
               "--batch-size", str(args.batch_size), "--precision", args.precision]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{model} {impl} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _report(results: dict, args) -> None:
    mib = 2**20
    print(f"\n{args.size} models, batch {args.batch_size}, {args.precision}; seconds are median (min-max) "
          f"of {args.repeats} fresh processes; memory in MiB (the same in every run)")  # fmt: skip
    print("| model | implementation | trace + lower s | compile s | total s | argument | output | alias "
          "| temp | total MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (model, impl), runs in results.items():
        cells = []
        for key in ("lower_s", "compile_s"):
            values = [r[key] for r in runs]
            cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})")
        totals = [r["lower_s"] + r["compile_s"] for r in runs]
        cells.append(f"{statistics.median(totals):.1f} ({min(totals):.1f}-{max(totals):.1f})")
        for key in ("argument", "output", "alias", "temp", "total"):
            values = {r[key] for r in runs}
            cells.append(" / ".join(f"{v / mib:.1f}" for v in sorted(values)))
        print(f"| {model} | {impl} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--impls", default=None, help="comma-separated; default: every one of each model")
    parser.add_argument("--size", choices=tuple(SIZES), default="full")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(*args.worker, args.size, args.batch_size, args.precision)))
        return
    cases = [
        (model, impl)
        for model in args.models.split(",")
        for impl in IMPLS[model]
        if args.impls is None or impl in args.impls.split(",")
    ]
    results: dict[tuple[str, str], list[dict]] = {case: [] for case in cases}
    for repeat in range(args.repeats):
        # Alternate the order too, so that no implementation always runs first.
        for model, impl in cases if repeat % 2 == 0 else cases[::-1]:
            run = _run_worker(model, impl, args)
            results[model, impl].append(run)
            print(f"repeat {repeat} {model:6s} {impl:15s} lower {run['lower_s']:.1f} s, compile "
                  f"{run['compile_s']:.1f} s, temp {run['temp'] / 2**20:.1f} MiB", flush=True)  # fmt: skip
    _report(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"model": m, "impl": i, "runs": r} for (m, i), r in results.items()], f, indent=1)


if __name__ == "__main__":
    main()
