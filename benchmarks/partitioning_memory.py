"""Per-device memory of a ViT train step: replicated vs FSDP vs Megatron parameters.

Compiles (never runs) one Adam train step of a ViT over a `("data", "model")` mesh of
fake CPU devices, with the parameters and the optimizer state sharded by each of the
`sharding` choices of `scenic_eqx.loops.fit`, and prints XLA's
`memory_analysis()` of the compiled step: the argument, output and temporary bytes of
ONE device, and their total (outputs written into donated arguments counted once). The
model is only traced (`eqx.filter_eval_shape`), so any size fits.

    .venv/bin/python benchmarks/partitioning_memory.py --variant B/16 --batch-size 64

The batch is split over `"data"` in every case; the parameters and Adam's moments are
donated, so outputs alias arguments (the "alias" column).
"""

import argparse
import os


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="B/16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--model-axis-size", type=int, default=2)
    parser.add_argument("--no-scan", action="store_true", help="unrolled blocks (slower compile)")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.devices}"
    )

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import NamedSharding, PartitionSpec

    from scenic_eqx import nn
    from scenic_eqx.loops import (
        MEGATRON_RULES,
        device_mesh,
        opt_state_shardings,
        parameter_shardings,
    )

    variant = nn.VIT_VARIANTS[args.variant]
    build = lambda key: nn.ViT(
        1000, **variant, image_size=args.image_size, scan_layers=not args.no_scan, key=key
    )
    model = eqx.filter_eval_shape(build, jax.random.key(0))
    # Every array of a ViT is a parameter (`partition_trainable` needs real arrays).
    params, static = eqx.partition(model, lambda x: isinstance(x, jax.ShapeDtypeStruct))
    optimizer = optax.adam(1e-3)
    opt_state = jax.eval_shape(optimizer.init, params)
    num_params = sum(x.size for x in jax.tree.leaves(params))
    print(
        f"ViT-{args.variant} at {args.image_size}, {num_params / 1e6:.1f}M parameters, "
        f"batch {args.batch_size}, Adam, float32, {args.devices} devices"
    )

    def loss_fn(params, images, labels):
        logits = jax.vmap(eqx.combine(params, static), axis_name="batch")(images)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    def step(params, opt_state, images, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    choices = [
        ("replicated", 1, "replicated"),
        ("fsdp", 1, "fsdp"),
        ("megatron", args.model_axis_size, "megatron"),
        ("megatron+fsdp", args.model_axis_size, [*MEGATRON_RULES, (".*", "fsdp")]),
    ]
    mib = 2**20
    columns = "".join(f"{c:>10}" for c in ("argument", "output", "alias", "temp", "total"))
    print(f"{'sharding':<15} {'mesh':<5}{columns}  MiB/device")
    for name, model_axis_size, sharding in choices:
        mesh = device_mesh(model_axis_size)
        param_sh, _ = parameter_shardings(params, mesh, sharding)
        opt_sh = opt_state_shardings(optimizer, opt_state, param_sh, mesh)
        batch = NamedSharding(mesh, PartitionSpec("data"))
        replicated = NamedSharding(mesh, PartitionSpec())
        side = args.image_size
        images = jax.ShapeDtypeStruct((args.batch_size, side, side, 3), jnp.float32)
        labels = jax.ShapeDtypeStruct((args.batch_size,), jnp.int32)
        compiled = (
            jax.jit(
                step,
                in_shardings=(param_sh, opt_sh, batch, batch),
                out_shardings=(param_sh, opt_sh, replicated),
                donate_argnums=(0, 1),
            )
            .lower(params, opt_state, images, labels)
            .compile()
        )
        m = compiled.memory_analysis()
        # Live at once: the arguments, the outputs not written into donated arguments,
        # and the temporaries.
        total = (
            m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
        )
        shape = "x".join(str(s) for s in mesh.devices.shape)
        print(
            f"{name:<15} {shape:<5}{m.argument_size_in_bytes / mib:10.1f}"
            f"{m.output_size_in_bytes / mib:10.1f}{m.alias_size_in_bytes / mib:10.1f}"
            f"{m.temp_size_in_bytes / mib:10.1f}{total / mib:10.1f}"
        )


if __name__ == "__main__":
    main()
