"""Training-step speed on one accelerator: scenic_eqx, Flax linen and timm under `torch.compile`.

    PYTHONPATH=src python3 benchmarks/gpu_step.py                    # ViT-B/16 and ResNet-50
    PYTHONPATH=src python3 benchmarks/gpu_step.py --size tiny        # small models, CPU: a check
    PYTHONPATH=src python3 benchmarks/gpu_step.py --json results.json --repeats 5 --steps 50

Needs jax (with CUDA on a GPU), equinox and optax, and for the other rows flax, torch and
timm; no TensorFlow and no network. An implementation whose libraries are missing is
skipped with the reason printed.

Models (the same network in each implementation): ViT-B/16 at 224x224 (class token,
learned position embedding, exact GELU; timm's `vit_base_patch16_224`) and ResNet-50 v1.5
at 224x224 (timm's `resnet50`), 1,000 classes, softmax cross-entropy, Adam, random
images. Precision: bfloat16 compute with float32 master weights and optimizer state in
all three: scenic_eqx's `precision="bfloat16"` policy (`loops.make_train_step`, the step
`loops.fit` runs), Flax modules with `dtype=bfloat16` (parameters float32), and timm
under `torch.autocast(dtype=torch.bfloat16)` with `torch.compile`. Attention takes
cuDNN's fused kernel in all three on a GPU: `nn.MultiHeadDotProductAttention` does so by
itself in bfloat16, the Flax model through `jax.nn.dot_product_attention(
implementation="cudnn")` as its `attention_fn`, and torch's `scaled_dot_product_attention`
with the cuDNN backend first. ResNet-50 in torch runs channels-last.

Batch: the largest power of two (up to `--max-batch`) whose training step fits in
`--fill` of the memory JAX may use on the device (its `bytes_limit`, by default 75% of
the chip's), by XLA's compiled memory analysis of the scenic_eqx step at batch 32 and 64
extrapolated linearly (compiled, never run: no out-of-memory trial); every
implementation then runs that batch. `--batch N` fixes it. On a CPU the batch is 8 at
full size; at tiny size it is 2.

Every measurement is a fresh process; the implementations alternate, so that no one of
them always runs first. Each times `--steps` steps after compiling and three warm-up steps,
with one device synchronisation at the end. The table gives seconds per step (median and
min-max over `--repeats` processes), images/s from the median, and MFU: model FLOPs
(`3 x batch x nn.forward_flops`, the analytic count of one example's forward pass) per
second over the chip's dense bfloat16 peak (`loops.peak_flops_per_device`; `--peak-tflops`
for a chip not in its table).

`--worker ...` runs one measurement and prints it as a JSON line.
"""

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time

from architectures import RESNET_STAGES, VIT_B16

MODELS = ("vit", "resnet")
IMPLS = ("scenic_eqx", "flax_linen", "timm")
REQUIRES = {
    "scenic_eqx": ("jax", "equinox", "optax"),
    "flax_linen": ("jax", "flax", "optax"),
    "timm": ("torch", "timm"),
}
NAMES = {
    "full": {"vit": "ViT-B/16", "resnet": "ResNet-50"},
    "tiny": {"vit": "tiny ViT", "resnet": "tiny ResNet-26"},
}
# name: (image side, number of classes, architecture).
SIZES = {
    "full": {"vit": (224, 1000, VIT_B16), "resnet": (224, 1000, {"depth": 50, "width": 64})},
    "tiny": {
        "vit": (32, 10, {"patch_size": 8, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "mlp_dim": 64}),
        "resnet": (32, 10, {"depth": 26, "width": 4}),
    },
}
FIXED_BATCH = {"full": 8, "tiny": 2}  # at tiny size, and at full size on a CPU
SEARCH_BATCHES = (32, 64)
WARMUP_STEPS = 3


def _random_batch(model: str, size: str, batch_size: int):
    import numpy as np

    image, num_classes, _ = SIZES[size][model]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch_size, image, image, 3), dtype=np.float32)
    return images, rng.integers(0, num_classes, batch_size).astype(np.int32)


def _scenic_eqx_model(model: str, size: str, *, key):
    from scenic_eqx import nn

    image, num_classes, arch = SIZES[size][model]
    if model == "vit":
        return nn.ViT(num_classes, **arch, image_size=image, key=key)
    return nn.ResNet(num_classes, **arch, key=key)


def scenic_eqx_step(model: str, size: str, *, abstract: bool = False):
    """The jitted scenic_eqx step `(state_arrays, batch) -> (state_arrays, loss)` and its
    initial state arrays (`jax.ShapeDtypeStruct`s when `abstract`)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from scenic_eqx import loops, tasks

    optimizer = optax.adam(1e-4)

    def init(key):
        return loops.init_train_state(_scenic_eqx_model(model, size, key=key), optimizer, key=key)

    key = jax.random.key(0)
    # Initialisation as one compiled program: op by op, each initializer's shape is
    # compiled on its own (a third slower at tiny size).
    state = eqx.filter_eval_shape(init, key) if abstract else eqx.filter_jit(init)(key)
    is_leaf = (lambda x: isinstance(x, jax.ShapeDtypeStruct)) if abstract else eqx.is_array
    arrays, static = eqx.partition(state, is_leaf)
    if not abstract:
        # Own buffers for every leaf: the BatchNorm state starts as the very arrays the
        # model holds, and one buffer cannot be donated twice.
        arrays = jax.tree.map(jnp.copy, arrays)
    train_step = loops.make_train_step(tasks.ClassificationTask(), optimizer, precision="bfloat16")

    def step(arrays, batch):
        new_state, loss, _ = train_step(eqx.combine(arrays, static), batch)
        return eqx.filter(new_state, eqx.is_array), loss

    return jax.jit(step, donate_argnums=0), arrays


def _jax_batch(model: str, size: str, batch_size: int, *, abstract: bool = False) -> dict:
    """A batch on the device: random images and labels, `batch_mask` ones (or their
    `jax.ShapeDtypeStruct`s when `abstract`)."""
    import jax
    import numpy as np

    if abstract:
        image = SIZES[size][model][0]
        return {
            "inputs": jax.ShapeDtypeStruct((batch_size, image, image, 3), np.float32),
            "label": jax.ShapeDtypeStruct((batch_size,), np.int32),
            "batch_mask": jax.ShapeDtypeStruct((batch_size,), np.float32),
        }
    images, labels = _random_batch(model, size, batch_size)
    return jax.device_put({"inputs": images, "label": labels, "batch_mask": np.ones(batch_size, np.float32)})


def _time_jax(step, state, batch, steps: int) -> dict:
    """Compiles `state, loss = step(state, batch)` ahead of time, warms up, times `steps`."""
    import jax
    import numpy as np

    start = time.perf_counter()
    compiled = step.lower(*state, batch).compile()
    compile_seconds = time.perf_counter() - start
    for _ in range(WARMUP_STEPS):
        *state, loss = compiled(*state, batch)
    jax.block_until_ready((state, loss))
    start = time.perf_counter()
    for _ in range(steps):
        *state, loss = compiled(*state, batch)
    jax.block_until_ready((state, loss))
    seconds = (time.perf_counter() - start) / steps
    device = jax.devices()[0]
    return {"seconds_per_step": seconds, "compile_seconds": compile_seconds, "loss": float(np.asarray(loss)),
            "device": device.device_kind, "platform": device.platform}  # fmt: skip


def run_scenic_eqx(model: str, size: str, batch_size: int, steps: int) -> dict:
    step, arrays = scenic_eqx_step(model, size)
    return _time_jax(step, (arrays,), _jax_batch(model, size, batch_size), steps)


def run_flax_linen(model: str, size: str, batch_size: int, steps: int) -> dict:
    """The same network in Flax linen: bfloat16 compute, float32 parameters, cuDNN attention."""
    import jax
    import jax.numpy as jnp
    import linen_models  # imports flax
    import optax

    image, num_classes, arch = SIZES[size][model]
    if model == "vit":
        net = linen_models.ViT(num_classes, **arch, dtype=jnp.bfloat16, fused_attention=True)
    else:
        net = linen_models.ResNet(num_classes, **arch, dtype=jnp.bfloat16)
    variables = jax.jit(lambda key: net.init(key, jnp.zeros((1, image, image, 3)), train=False))(
        jax.random.key(0)
    )
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    optimizer = optax.adam(1e-4)

    def loss_fn(params, batch_stats, batch):
        logits, updates = net.apply(
            {"params": params, "batch_stats": batch_stats},
            batch["inputs"],
            train=True,
            mutable=["batch_stats"],
        )
        logits = logits.astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, updates.get("batch_stats", {})

    def step(params, batch_stats, opt_state, batch):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    state = (params, batch_stats, jax.jit(optimizer.init)(params))
    return _time_jax(
        jax.jit(step, donate_argnums=(0, 1, 2)), state, _jax_batch(model, size, batch_size), steps
    )


def run_timm(model: str, size: str, batch_size: int, steps: int) -> dict:
    """timm's model under `torch.compile`, bfloat16 autocast, fused Adam on CUDA."""
    import contextlib

    import timm
    import torch
    import torch.nn.functional as F

    image, num_classes, arch = SIZES[size][model]
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if not cuda and batch_size > FIXED_BATCH[size]:
        raise RuntimeError(f"torch sees no CUDA device: batch {batch_size} is for the accelerator JAX uses")
    torch.manual_seed(0)
    layout = torch.contiguous_format
    if model == "vit":
        net = timm.models.vision_transformer.VisionTransformer(
            img_size=image,
            patch_size=arch["patch_size"],
            embed_dim=arch["hidden_size"],
            depth=arch["num_layers"],
            num_heads=arch["num_heads"],
            mlp_ratio=arch["mlp_dim"] / arch["hidden_size"],
            num_classes=num_classes,
        )
    else:
        net = timm.models.resnet.ResNet(
            block=timm.models.resnet.Bottleneck,
            layers=RESNET_STAGES[arch["depth"]],
            channels=tuple(arch["width"] * 2**i for i in range(4)),
            stem_width=arch["width"],
            num_classes=num_classes,
        )
        layout = torch.channels_last
    net = net.to(device, memory_format=layout).train()
    compiled = torch.compile(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, fused=cuda)
    images_np, labels_np = _random_batch(model, size, batch_size)
    images = torch.from_numpy(images_np).permute(0, 3, 1, 2).to(device).contiguous(memory_format=layout)
    labels = torch.from_numpy(labels_np).long().to(device)
    attention = contextlib.nullcontext()
    if cuda:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                 SDPBackend.MATH]  # fmt: skip
        attention = sdpa_kernel(order, set_priority=True)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = F.cross_entropy(compiled(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    with attention:
        start = time.perf_counter()
        step()
        sync()
        compile_seconds = time.perf_counter() - start
        for _ in range(WARMUP_STEPS):
            step()
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        sync()
        seconds = (time.perf_counter() - start) / steps
    return {"seconds_per_step": seconds, "compile_seconds": compile_seconds, "loss": float(loss.item()),
            "device": torch.cuda.get_device_name() if cuda else "cpu", "platform": device}  # fmt: skip


def plan(models: list[str], size: str, fill: float, max_batch: int) -> dict:
    """Each model's analytic FLOPs per example, the device, and the batch that fills it."""
    import equinox as eqx
    import jax

    from scenic_eqx import loops, nn

    device = jax.devices()[0]
    limit = None if device.platform == "cpu" else (device.memory_stats() or {}).get("bytes_limit")
    plans = {}
    for model in models:
        image = SIZES[size][model][0]
        net = eqx.filter_eval_shape(lambda key: _scenic_eqx_model(model, size, key=key), jax.random.key(0))
        plans[model] = {
            "forward_flops": nn.forward_flops(net, (image, image, 3)),
            "device": device.device_kind,
            "peak_flops": loops.peak_flops_per_device(device),
        }
        if size == "tiny" or limit is None:
            rule = "tiny size" if size == "tiny" else "no device memory limit (CPU)"
            plans[model] |= {"batch_size": FIXED_BATCH[size], "batch_rule": rule}
        else:
            plans[model] |= _batch_filling(model, size, fill * limit, max_batch)
    return plans


def _batch_filling(model: str, size: str, budget: float, max_batch: int) -> dict:
    """The largest power of two, at most `max_batch`, whose compiled scenic_eqx step needs
    at most `budget` bytes: XLA's memory analysis at two batches, extrapolated linearly."""
    step, arrays = scenic_eqx_step(model, size, abstract=True)
    totals = []
    for batch_size in SEARCH_BATCHES:
        batch = _jax_batch(model, size, batch_size, abstract=True)
        memory = step.lower(arrays, batch).compile().memory_analysis()
        totals.append(memory.argument_size_in_bytes + memory.output_size_in_bytes
                      - memory.alias_size_in_bytes + memory.temp_size_in_bytes)  # fmt: skip
    per_example = (totals[1] - totals[0]) / (SEARCH_BATCHES[1] - SEARCH_BATCHES[0])
    fixed = totals[0] - per_example * SEARCH_BATCHES[0]
    batch_size = 1
    while batch_size * 2 <= max_batch and fixed + per_example * batch_size * 2 <= budget:
        batch_size *= 2
    rule = (f"largest power of two <= {max_batch} within {budget / 2**30:.1f} GiB: "
            f"{fixed / 2**30:.2f} GiB + {per_example / 2**20:.1f} MiB per example")  # fmt: skip
    return {"batch_size": batch_size, "batch_rule": rule}


def _worker(args: list[str], env_extra: dict | None = None) -> dict:
    """Runs `--worker ...args` in a fresh process; its JSON line, or `{"error": ...}`."""
    env = dict(os.environ) | (env_extra or {})
    result = subprocess.run(
        [sys.executable, __file__, "--worker", *args], env=env, capture_output=True, text=True
    )
    if result.returncode:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        return {
            "error": lines[-1] if lines else f"exit status {result.returncode}",
            "stderr": result.stderr[-4000:],
        }
    return json.loads(result.stdout.strip().splitlines()[-1])


def _missing(impl: str) -> str | None:
    missing = [name for name in REQUIRES[impl] if importlib.util.find_spec(name) is None]
    return f"{', '.join(missing)} not installed" if missing else None


def _summarise(runs: list[dict], batch_size: int, forward_flops: int, peak: float | None) -> dict:
    from scenic_eqx import loops

    seconds = [r["seconds_per_step"] for r in runs]
    median = statistics.median(seconds)
    flops_per_step = 3 * batch_size * forward_flops
    mfu = None if peak is None else loops.model_flops_utilization(flops_per_step, median, 1, peak)
    return {
        "seconds_per_step": seconds,
        "median_seconds_per_step": median,
        "images_per_second": batch_size / median,
        "mfu": mfu,
        "compile_seconds": [r["compile_seconds"] for r in runs],
        "loss": [r["loss"] for r in runs],
        "device": runs[0]["device"],
        "platform": runs[0]["platform"],
    }


def _print_table(report: dict) -> None:
    print(f"\n{report['size']} models, bfloat16 compute; step seconds are the median (min-max) of "
          f"{report['repeats']} fresh processes x {report['steps']} steps")  # fmt: skip
    print("| model | implementation | device | batch | step ms | images/s | MFU | compile s |")
    print("|---|---|---|---|---|---|---|---|")
    for entry in report["models"].values():
        for impl, row in entry["implementations"].items():
            head = f"| {entry['name']} | {impl} |"
            if "skipped" in row or "error" in row:
                reason = row.get("skipped") or f"failed: {row['error']}"
                print(f"{head} | {entry['batch_size']} | {reason} | | | |")
                continue
            s = [1e3 * x for x in row["seconds_per_step"]]
            mfu = "n/a" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
            print(f"{head} {row['device']} | {entry['batch_size']} | {statistics.median(s):.1f} "
                  f"({min(s):.1f}-{max(s):.1f}) | {row['images_per_second']:.1f} | {mfu} "
                  f"| {statistics.median(row['compile_seconds']):.1f} |")  # fmt: skip
    for entry in report["models"].values():
        print(f"{entry['name']}: batch {entry['batch_size']} ({entry['batch_rule']}); "
              f"{entry['forward_flops'] / 1e9:.2f} GFLOPs per example forward")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="full")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, help="the batch of every model (default: fill the chip)")
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--fill", type=float, default=0.8, help="fraction of device memory the batch may use")
    parser.add_argument(
        "--peak-tflops", type=float, help="the chip's dense bfloat16 peak, if not in the table"
    )
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, model = args.worker
        if kind == "plan":
            print(json.dumps(plan(model.split(","), args.size, args.fill, args.max_batch)))
        else:
            print(json.dumps(globals()[f"run_{kind}"](model, args.size, args.batch_size, args.steps)))
        return

    size_args = ["--size", args.size, "--steps", str(args.steps)]
    impls = args.impls.split(",")
    skipped = {impl: _missing(impl) for impl in impls}
    if _missing("scenic_eqx"):
        sys.exit(f"scenic_eqx's requirements are missing: {_missing('scenic_eqx')}")
    report = {"size": args.size, "repeats": args.repeats, "steps": args.steps, "models": {}}
    plans = _worker(
        ["plan", args.models, *size_args, "--fill", str(args.fill), "--max-batch", str(args.max_batch)]
    )
    if "error" in plans:
        sys.exit(f"planning failed:\n{plans['stderr']}")
    for model, entry in plans.items():
        if args.batch:
            entry |= {"batch_size": args.batch, "batch_rule": "--batch"}
        if args.peak_tflops:
            entry["peak_flops"] = args.peak_tflops * 1e12
        entry["name"] = NAMES[args.size][model]
        report["models"][model] = entry
        print(f"{entry['name']}: batch {entry['batch_size']} ({entry['batch_rule']})", flush=True)

    runs = {(m, i): [] for m in report["models"] for i in impls if not skipped[i]}
    failed = {}
    for repeat in range(args.repeats):
        order = list(runs) if repeat % 2 == 0 else list(runs)[::-1]
        for model, impl in order:
            if (model, impl) in failed:
                continue
            batch = str(report["models"][model]["batch_size"])
            result = _worker([impl, model, *size_args, "--batch-size", batch])
            if "error" not in result and not math.isfinite(result["loss"]):
                result = {"error": f"the loss is not finite ({result['loss']})", "stderr": ""}
            if "error" in result:
                failed[model, impl] = result["error"]
                print(f"repeat {repeat} {model} {impl} failed:\n{result['stderr']}", flush=True)
                continue
            runs[model, impl].append(result)
            print(f"repeat {repeat} {model:6s} {impl:10s} {1e3 * result['seconds_per_step']:.1f} ms/step "
                  f"(compiled in {result['compile_seconds']:.1f} s)", flush=True)  # fmt: skip

    for model, entry in report["models"].items():
        rows = entry["implementations"] = {}
        for impl in impls:
            if skipped[impl]:
                rows[impl] = {"skipped": f"skipped: {skipped[impl]}"}
            elif (model, impl) in failed:
                rows[impl] = {"error": failed[model, impl]}
            else:
                peak = entry["peak_flops"]
                rows[impl] = _summarise(runs[model, impl], entry["batch_size"], entry["forward_flops"], peak)
    _print_table(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if failed:
        sys.exit(f"failed: {', '.join(f'{m} {i}' for m, i in failed)}")


if __name__ == "__main__":
    main()
