"""Compiled memory of a ViT training step with and without rematerialisation.

Compiles (never runs) one training step of a ViT (vmapped model, softmax cross-entropy,
`jax.value_and_grad`, an Adam update; parameters and Adam's moments donated) for each
`remat_policy` of `nn.ViT`, and prints XLA's `memory_analysis()` of the compiled step:
temporary, argument and output bytes, the ratio of temporary bytes to those without
remat, and the time to lower and compile. The model is only traced
(`eqx.filter_eval_shape`), so any size fits in memory. Before that it checks once, on a
small ViT it does run, that the loss and every gradient with remat equal those without.

    .venv/bin/python benchmarks/remat_memory.py                   # ViT-B/16, 224, batch 8
    .venv/bin/python benchmarks/remat_memory.py --no-scan         # unrolled blocks
    .venv/bin/python benchmarks/remat_memory.py --memory-scheduler

`--memory-scheduler` compiles with XLA:CPU's memory-optimised scheduler
(`xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED`) instead of its default,
which orders the program for concurrency. The target: temporary bytes with
`"nothing_saveable"` at most 60% of those without remat.
"""

import argparse
import time

POLICIES = (None, "nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable",
            "everything_saveable")  # fmt: skip


def _train_step(static, optimizer):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    def loss_fn(params, images, labels):
        logits = jax.vmap(eqx.combine(params, static), axis_name="batch")(images)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    def step(params, opt_state, images, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return loss_fn, step


def check_gradients(scan_layers: bool) -> None:
    """Loss and gradients of a small ViT with each policy equal those without remat."""
    import equinox as eqx
    import jax
    import numpy as np

    from scenic_eqx import nn

    images = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    labels = jax.numpy.arange(4) % 10
    reference = None
    for policy in POLICIES:
        model = nn.ViT(10, 8, 64, 2, 2, 128, 32, scan_layers=scan_layers,
                       remat_policy=policy, key=jax.random.key(0))  # fmt: skip
        params, static = eqx.partition(model, eqx.is_array)
        loss_fn, _ = _train_step(static, None)
        loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params, images, labels)
        leaves = [np.asarray(loss), *map(np.asarray, jax.tree.leaves(grads))]
        if reference is None:
            reference = leaves
            continue
        for got, want in zip(leaves, reference, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    print(f"gradients equal with every policy (small ViT, scan_layers={scan_layers})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="B/16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-scan", action="store_true", help="unrolled blocks")
    parser.add_argument("--memory-scheduler", action="store_true",
                        help="XLA:CPU's memory-optimised scheduler")  # fmt: skip
    parser.add_argument("--policies", default=",".join(str(p) for p in POLICIES),
                        help="comma-separated; no remat is always compiled first")  # fmt: skip
    args = parser.parse_args()

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from scenic_eqx import nn

    scan_layers = not args.no_scan
    check_gradients(scan_layers)
    options = (
        {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"} if args.memory_scheduler else None
    )
    policies = [None if p == "None" else p for p in args.policies.split(",")]
    policies = [None] + [p for p in policies if p is not None]
    variant = nn.VIT_VARIANTS[args.variant]
    optimizer = optax.adam(1e-3)
    size = args.image_size
    images = jax.ShapeDtypeStruct((args.batch_size, size, size, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((args.batch_size,), jnp.int32)
    print(
        f"ViT-{args.variant} at {args.image_size}, batch {args.batch_size}, float32, Adam, "
        f"scan_layers={scan_layers}, scheduler="
        f"{'memory-optimised' if args.memory_scheduler else 'default'}, {jax.default_backend()}"
    )
    mib = 2**20
    print("| remat_policy | temp MiB | argument MiB | output MiB | temp / no remat | compile s |")
    print("|---|---|---|---|---|---|")
    baseline = None
    for policy in policies:
        build = lambda key: nn.ViT(
            1000,
            **variant,
            image_size=args.image_size,
            scan_layers=scan_layers,
            remat_policy=policy,
            key=key,
        )
        model = eqx.filter_eval_shape(build, jax.random.key(0))
        params, static = eqx.partition(model, lambda x: isinstance(x, jax.ShapeDtypeStruct))
        opt_state = jax.eval_shape(optimizer.init, params)
        _, step = _train_step(static, optimizer)
        start = time.perf_counter()
        compiled = (
            jax.jit(step, donate_argnums=(0, 1), compiler_options=options)
            .lower(params, opt_state, images, labels)
            .compile()
        )
        seconds = time.perf_counter() - start
        m = compiled.memory_analysis()
        baseline = m.temp_size_in_bytes if baseline is None else baseline
        print(
            f"| {policy} | {m.temp_size_in_bytes / mib:.1f} | {m.argument_size_in_bytes / mib:.1f} "
            f"| {m.output_size_in_bytes / mib:.1f} | {m.temp_size_in_bytes / baseline:.3f} "
            f"| {seconds:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
