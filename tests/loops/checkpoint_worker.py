"""One process of a two-process checkpoint run: `python checkpoint_worker.py PROCESS_ID NUM_PROCESSES PORT OUT`.

Each process has 2 CPU devices. Together they save checkpoints 1 and 2 of a state whose
middle weight is FSDP-sharded over the 4 devices of both processes; process 0 then flips
one byte of its own shard of that weight in checkpoint 2, and both restore the newest
intact checkpoint. Each writes what it restored to `OUT/result_<PROCESS_ID>.json`.
"""

import json
import os
import pathlib
import sys
import warnings

process_id, num_processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={4 // num_processes}"

import jax  # noqa: E402

jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id
)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from scenic_eqx import loops  # noqa: E402
from scenic_eqx.loops._checkpoint import Checkpointer  # noqa: E402
from scenic_eqx.loops._manifest import raw_leaves  # noqa: E402


def placed_state(step):
    """A small MLP's state on the 4 devices; its middle weight (random bits, which the
    storage layer stores verbatim) split over them."""
    model = eqx.nn.MLP(4, 3, 64, depth=2, key=jax.random.key(step))
    bits = jax.random.bits(jax.random.key(100 + step), (64, 64)) & jnp.uint32(0xBFFFFFFF)
    model = eqx.tree_at(lambda m: m.layers[1].weight, model, jax.lax.bitcast_convert_type(bits, jnp.float32))
    state, _ = loops.init_placed_train_state(
        model, optax.sgd(0.1, momentum=0.9), key=jax.random.key(7), mesh=loops.data_mesh(),
        sharding="fsdp", fsdp_min_size=1024,
    )  # fmt: skip
    return eqx.tree_at(lambda s: s.step, state, state.step + step)  # still a global array


def flip_a_byte_of(needle: bytes, directory: str) -> None:
    """Flips one byte inside the file region equal to `needle` (an array's data)."""
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            data = bytearray(pathlib.Path(path).read_bytes())
            offset = data.find(needle)
            if offset >= 0:
                data[offset + 100] ^= 0x04
                with open(path, "wb") as f:
                    f.write(data)
                return
    raise AssertionError(f"The array's bytes are in no file under {directory}.")


def gathered(state):
    return [np.asarray(multihost_utils.process_allgather(x, tiled=True)) for _, x in raw_leaves(state)]


assert jax.device_count() == 4 and jax.process_count() == num_processes
directory = os.path.join(out, "checkpoints")
checkpointer = Checkpointer(directory)
states = {step: placed_state(step) for step in (1, 2)}
weight = states[2].model.layers[1].weight
assert {s.data.shape for s in weight.addressable_shards} == {(64, 16)}
for step, state in states.items():
    checkpointer.save(step, train_state=state)
checkpointer.wait_until_finished()
multihost_utils.sync_global_devices("saved")

if process_id == 0:
    flip_a_byte_of(np.asarray(weight.addressable_shards[0].data).tobytes(), os.path.join(directory, "2"))
multihost_utils.sync_global_devices("damaged")

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    step, restored = checkpointer.restore_latest_intact(train_state=placed_state(0))
checkpointer.close()
equal = all(np.array_equal(a, b) for a, b in zip(gathered(restored["train_state"]), gathered(states[1])))
with open(os.path.join(out, f"result_{process_id}.json"), "w") as f:
    json.dump({"step": step, "equal": equal, "warning": "\n".join(str(w.message) for w in caught)}, f)
