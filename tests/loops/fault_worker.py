"""One training process of the fault-tolerance tests: `python fault_worker.py WORKDIR [options]`.

Trains the tiny dropout MLP of `tiny_models` with `loops.fit` on a fixed list of global
batches (each process passes its own rows), checkpointing into WORKDIR, and prints
`step N` after every step (flushed, so that a test can signal it at a chosen step).
When training ends it writes the parameters to WORKDIR/params.npz (process 0) and prints
`done`; when preempted it prints `preempted N` and exits with code 143.
"""

import argparse
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("workdir")
parser.add_argument("--num_steps", type=int, default=24)
parser.add_argument("--checkpoint_every", type=int, default=4)
parser.add_argument("--steps_per_dispatch", type=int, default=1)
parser.add_argument("--step_sleep", type=float, default=0.0, help="seconds each step's callback sleeps")
parser.add_argument("--devices", type=int, default=2, help="CPU devices per process")
parser.add_argument("--num_processes", type=int, default=1)
parser.add_argument("--process_id", type=int, default=0)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--heartbeat_timeout", type=int, default=100)
parser.add_argument("--step_timeout", type=float, default=None)
parser.add_argument("--stall_process", type=int, default=-1, help="this process sleeps forever ...")
parser.add_argument("--stall_at", type=int, default=-1, help="... after this step")
args = parser.parse_args()
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"

# tensorboardX (the run logger's) imports torch when it is installed: 2 s of every start.
sys.modules["torch"] = None

import jax  # noqa: E402

if args.num_processes > 1:
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{args.port}", num_processes=args.num_processes,
        process_id=args.process_id, heartbeat_timeout_seconds=args.heartbeat_timeout,
    )  # fmt: skip

import equinox as eqx  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from tiny_models import DropoutMLP, make_batches  # noqa: E402

from scenic_eqx import loops, tasks  # noqa: E402


def this_host(batches):
    share = len(batches[0]["batch_mask"]) // args.num_processes
    rows = slice(args.process_id * share, (args.process_id + 1) * share)
    return [jax.tree.map(lambda v: v[rows], batch) for batch in batches]


def announce(step, record, state):
    print(f"step {step}", flush=True)
    if args.process_id == args.stall_process and step == args.stall_at:
        print("stalling", flush=True)
        while True:  # a Python stall before the next collective; heartbeats go on
            time.sleep(1)
    time.sleep(args.step_sleep)


try:
    state, _ = loops.fit(
        DropoutMLP(key=jax.random.key(0)), tasks.ClassificationTask(),
        this_host(make_batches(args.num_steps)), optimizer=optax.adam(1e-2),
        num_steps=args.num_steps, key=jax.random.key(3), log_every=args.steps_per_dispatch,
        checkpoint_every=args.checkpoint_every, steps_per_dispatch=args.steps_per_dispatch,
        workdir=args.workdir, callbacks=[announce], progress=False,
        step_timeout_seconds=args.step_timeout,
    )  # fmt: skip
except loops.Preempted as preempted:
    print(f"preempted {preempted.step}", flush=True)
    raise
if args.process_id == 0:
    params = jax.tree.leaves(eqx.filter(state.model, eqx.is_inexact_array))
    np.savez(os.path.join(args.workdir, "params.npz"), *[np.asarray(p.addressable_data(0)) for p in params])
print("done", flush=True)
