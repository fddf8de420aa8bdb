"""Cost of verified checkpoints: checksums, save and restore against plain orbax.

The state is a ViT's `TrainState` with Adam (parameters plus two moments), saved and
restored by `loops.Checkpointer` (which adds a manifest with a checksum of every array
and verifies them on restore) and by a bare orbax `CheckpointManager` on the same
arrays. Runs alternate; medians with min-max.

    .venv/bin/python benchmarks/checkpoint_verification.py --variant S/16 --repeats 5

Prints: the checksum computation alone (first call, with its compilation, then
steady-state), the blocking part of `save` (what the training loop waits for) and the
whole save (`save` + `wait_until_finished`), and `restore`.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time

import jax
import optax

from scenic_eqx import loops, nn
from scenic_eqx.loops._checksum import array_checksums
from scenic_eqx.loops._manifest import raw_leaves


def summary(times):
    return f"{statistics.median(times) * 1e3:8.1f} ms ({min(times) * 1e3:.1f}-{max(times) * 1e3:.1f})"


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="S/16")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import orbax.checkpoint as ocp

    model = nn.ViT(1000, **nn.VIT_VARIANTS[args.variant], key=jax.random.key(0))
    state = loops.init_train_state(model, optax.adam(1e-3), key=jax.random.key(1))
    leaves = [x for _, x in raw_leaves(state)]
    num_bytes = sum(x.nbytes for x in leaves)
    print(f"ViT-{args.variant} + Adam: {len(leaves)} arrays, {num_bytes / 2**20:.0f} MiB")

    first, _ = timed(lambda: array_checksums(leaves))
    sums = [timed(lambda: array_checksums(leaves))[0] for _ in range(args.repeats)]
    print(f"checksums, first call (compiles): {first * 1e3:.0f} ms")
    print(
        f"checksums, steady state:      {summary(sums)}  ({num_bytes / statistics.median(sums) / 2**30:.2f} GiB/s)"
    )

    root = tempfile.mkdtemp()
    like = [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding) for x in leaves]
    times = {name: [] for name in ("verified save (blocking)", "verified save (total)", "verified restore",
                                   "orbax save (blocking)", "orbax save (total)", "orbax restore")}  # fmt: skip
    for round_ in range(args.repeats + 1):  # round 0 warms up both
        verified = loops.Checkpointer(os.path.join(root, f"verified{round_}"))
        blocking, _ = timed(lambda: verified.save(1, train_state=state))
        total = blocking + timed(verified.wait_until_finished)[0]
        restore, _ = timed(lambda: verified.restore(train_state=state))
        verified.close()
        manager = ocp.CheckpointManager(os.path.join(root, f"orbax{round_}"))
        orbax_blocking, _ = timed(lambda: manager.save(1, args=ocp.args.StandardSave(leaves)))
        orbax_total = orbax_blocking + timed(manager.wait_until_finished)[0]
        orbax_restore, _ = timed(lambda: manager.restore(1, args=ocp.args.StandardRestore(like)))
        manager.close()
        if round_ > 0:
            for name, value in zip(
                times, (blocking, total, restore, orbax_blocking, orbax_total, orbax_restore)
            ):
                times[name].append(value)
    shutil.rmtree(root)
    for name, values in times.items():
        print(f"{name:26s} {summary(values)}")


if __name__ == "__main__":
    main()
