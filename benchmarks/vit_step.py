"""Training-step time of one small ViT in scenic_eqx, Flax linen and PyTorch.

The network (the same in each): 32x32x3 inputs, patch 4 (64 tokens + a class token),
hidden 192, 6 layers, 3 heads, MLP 768, exact GELU, learned position embedding, 10
classes; batch 32, float32, Adam, softmax cross-entropy.

    .venv/bin/pip install -c constraints.txt -e '.[bench]'   # flax; torch==2.13.0 by hand
    .venv/bin/python benchmarks/vit_step.py --repeats 4 --steps 20

The driver runs every implementation in a fresh process, alternating implementations and
environments (default, and `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, which must be set
before a process starts) so that load from other jobs on a shared machine spreads over
all of them; it prints the median and min-max seconds per step, and ratios of medians.
`--worker NAME` runs one measurement and prints `seconds_per_step`.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

BATCH, IMAGE, PATCH, HIDDEN, LAYERS, HEADS, MLP, CLASSES = 32, 32, 4, 192, 6, 3, 768, 10
IMPLS = ("scenic_eqx", "scenic_eqx_fit", "scenic_eqx_fit_bf16", "flax_linen", "torch")
HUGETLB = "glibc.malloc.hugetlb=1"


def _jax_data():
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.standard_normal((BATCH, IMAGE, IMAGE, 3), dtype=np.float32)
    labels = rng.integers(0, CLASSES, BATCH).astype(np.int32)
    return images, labels


def _time_jax_step(step, state, images, labels, steps: int) -> float:
    """Compiles and warms up `state = step(*state, images, labels)`, then times `steps`."""
    import jax

    for _ in range(3):
        state = step(*state, images, labels)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state = step(*state, images, labels)
    jax.block_until_ready(state)
    return (time.perf_counter() - start) / steps


def scenic_eqx(steps: int) -> float:
    """A hand-written low-overhead step: partition once, `jax.jit` with donation."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from scenic_eqx import nn

    model = nn.ViT(CLASSES, PATCH, HIDDEN, LAYERS, HEADS, MLP, IMAGE, key=jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimizer = optax.adam(1e-4)

    def loss_fn(params, images, labels):
        logits = jax.vmap(eqx.combine(params, static), axis_name="batch")(images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def step(params, opt_state, images, labels):
        grads = jax.grad(loss_fn)(params, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    step = jax.jit(step, donate_argnums=(0, 1))
    images, labels = map(jnp.asarray, _jax_data())
    return _time_jax_step(step, (params, optimizer.init(params)), images, labels, steps)


def scenic_eqx_fit(steps: int, precision: str = "float32") -> float:
    """The same model trained by `scenic_eqx.loops.fit` (includes its per-step host work)."""
    import jax
    import numpy as np
    import optax

    from scenic_eqx import loops, nn, tasks

    images, labels = _jax_data()
    batch = {"inputs": images, "label": labels, "batch_mask": np.ones(BATCH, np.float32)}
    model = nn.ViT(CLASSES, PATCH, HIDDEN, LAYERS, HEADS, MLP, IMAGE, key=jax.random.key(0))
    task = tasks.ClassificationTask()
    optimizer = optax.adam(1e-4)

    # fit's own throughput records: each window ends in a device sync and leaves out
    # compilation. The first window (3 steps) is warm-up; the later ones are timed.
    warmup = 3
    _, history = loops.fit(
        model, task, iter([batch] * (warmup + steps)), optimizer=optimizer,
        num_steps=warmup + steps, key=jax.random.key(1), log_every=warmup, progress=False,
        precision=precision,
    )  # fmt: skip
    seconds, previous = 0.0, warmup
    for record in history[1:]:
        seconds += (record["step"] - previous) * BATCH / record["examples_per_sec"]
        previous = record["step"]
    return seconds / steps


def scenic_eqx_fit_bf16(steps: int) -> float:
    """`scenic_eqx_fit` with `precision="bfloat16"` (bfloat16 compute, float32 master state)."""
    return scenic_eqx_fit(steps, precision="bfloat16")


def _flax_model():
    import flax.linen as fnn
    import jax
    import jax.numpy as jnp

    class Block(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            y = fnn.LayerNorm(epsilon=1e-6)(x)
            y = fnn.MultiHeadDotProductAttention(num_heads=HEADS)(y, y)
            x = x + y
            y = fnn.LayerNorm(epsilon=1e-6)(x)
            y = fnn.Dense(MLP)(y)
            y = fnn.gelu(y, approximate=False)
            return x + fnn.Dense(HIDDEN)(y)

    class FlaxViT(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            x = fnn.Conv(HIDDEN, (PATCH, PATCH), strides=(PATCH, PATCH), padding="VALID")(x)
            x = x.reshape(x.shape[0], -1, HIDDEN)
            cls = self.param("cls", fnn.initializers.zeros, (1, 1, HIDDEN))
            x = jnp.concatenate([jnp.tile(cls, (x.shape[0], 1, 1)), x], axis=1)
            pos = self.param("pos_embedding", fnn.initializers.normal(0.02), (1, x.shape[1], HIDDEN))
            x = x + pos
            for _ in range(LAYERS):
                x = Block()(x)
            x = fnn.LayerNorm(epsilon=1e-6)(x)
            return fnn.Dense(CLASSES)(x[:, 0])

    model = FlaxViT()
    params = model.init(jax.random.key(0), jnp.zeros((1, IMAGE, IMAGE, 3)))
    return model, params


def flax_linen(steps: int) -> float:
    """The same network in Flax linen, batched the Flax way, the same jitted step."""
    import jax
    import jax.numpy as jnp
    import optax

    model, params = _flax_model()
    optimizer = optax.adam(1e-4)

    def loss_fn(params, images, labels):
        logits = model.apply(params, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def step(params, opt_state, images, labels):
        grads = jax.grad(loss_fn)(params, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    step = jax.jit(step, donate_argnums=(0, 1))
    images, labels = map(jnp.asarray, _jax_data())
    return _time_jax_step(step, (params, optimizer.init(params)), images, labels, steps)


def torch(steps: int) -> float:
    """The same network written by hand in PyTorch (eager, `scaled_dot_product_attention`)."""
    import torch
    import torch.nn.functional as F
    from torch import nn as tnn

    torch.manual_seed(0)

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = tnn.LayerNorm(HIDDEN, eps=1e-6)
            self.qkv = tnn.Linear(HIDDEN, 3 * HIDDEN)
            self.out = tnn.Linear(HIDDEN, HIDDEN)
            self.norm2 = tnn.LayerNorm(HIDDEN, eps=1e-6)
            self.fc1, self.fc2 = tnn.Linear(HIDDEN, MLP), tnn.Linear(MLP, HIDDEN)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, HEADS, -1).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, -1)
            x = x + self.out(y)
            return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))

    class TorchViT(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = tnn.Conv2d(3, HIDDEN, PATCH, stride=PATCH)
            tokens = (IMAGE // PATCH) ** 2 + 1
            self.cls_token = tnn.Parameter(torch.zeros(1, 1, HIDDEN))
            self.pos_embedding = tnn.Parameter(0.02 * torch.randn(1, tokens, HIDDEN))
            self.blocks = tnn.Sequential(*[Block() for _ in range(LAYERS)])
            self.norm = tnn.LayerNorm(HIDDEN, eps=1e-6)
            self.head = tnn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            x = self.embedding(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            x = self.blocks(x + self.pos_embedding)
            return self.head(self.norm(x)[:, 0])

    model = TorchViT()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images_np, labels_np = _jax_data()
    images = torch.from_numpy(images_np).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(labels_np).long()

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def _run_worker(name: str, steps: int, hugetlb: bool) -> float:
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if hugetlb:
        env["GLIBC_TUNABLES"] = HUGETLB
    out = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--steps", str(steps)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--envs", default="default,hugetlb")
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(globals()[args.worker](args.steps))
        return
    impls, envs = args.impls.split(","), args.envs.split(",")
    times: dict[tuple[str, str], list[float]] = {(i, e): [] for i in impls for e in envs}
    for repeat in range(args.repeats):
        # Alternate the order too, so no implementation always runs first.
        order = [(i, e) for e in envs for i in impls]
        for impl, env in order if repeat % 2 == 0 else order[::-1]:
            seconds = _run_worker(impl, args.steps, hugetlb=env == "hugetlb")
            times[impl, env].append(seconds)
            print(f"repeat {repeat} {impl:15s} {env:8s} {seconds:.3f} s/step", flush=True)
    print(f"\nseconds per step: median (min-max) of {args.repeats} runs x {args.steps} steps")
    medians = {k: statistics.median(v) for k, v in times.items()}
    for env in envs:
        for impl in impls:
            v = times[impl, env]
            ratios = ", ".join(
                f"{other} / this = {medians[other, env] / medians[impl, env]:.2f}"
                for other in impls
                if other != impl
            )
            print(f"{env:8s} {impl:15s} {medians[impl, env]:.3f} ({min(v):.3f}-{max(v):.3f})  {ratios}")


if __name__ == "__main__":
    main()
