"""One host of a simulated multi-host run: `python multihost_worker.py PROCESS_ID NUM_PROCESSES PORT OUT`.

Each process has 2 CPU devices. With NUM_PROCESSES 2 the processes form one
`jax.distributed` cluster of 4 devices and each passes its own half of every global
batch; with NUM_PROCESSES 1 a single process with 4 devices sees whole batches. Both
write the trained parameters and the eval metrics to OUT (process 0 only): of a
replicated model, and of one whose large weight is FSDP-sharded over the 4 devices.
"""

import os
import sys

process_id, num_processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
devices_per_process = 4 // num_processes
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_per_process}"

import jax  # noqa: E402

if num_processes > 1:
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id
    )

import equinox as eqx  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from scenic_eqx import loops, tasks  # noqa: E402


class DropoutMLP(eqx.Module):
    hidden: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    head: eqx.nn.Linear

    def __init__(self, *, key):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(4, 16, key=k1)
        self.dropout = eqx.nn.Dropout(0.2)
        self.head = eqx.nn.Linear(16, 3, key=k2)

    def __call__(self, x, *, key=None):
        return self.head(self.dropout(jax.nn.relu(self.hidden(x)), key=key))


class WideMLP(eqx.Module):
    """Its middle weight (256 x 256) is large enough for FSDP to shard it."""

    layers: tuple[eqx.nn.Linear, ...]

    def __init__(self, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.layers = (
            eqx.nn.Linear(4, 256, key=k1),
            eqx.nn.Linear(256, 256, key=k2),
            eqx.nn.Linear(256, 3, key=k3),
        )

    def __call__(self, x, *, key=None):
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


class BoxRegressor(eqx.Module):
    """DETR-shaped outputs (3 queries, 2 classes) from a 4x4 image: one linear map."""

    linear: eqx.nn.Linear

    def __init__(self, *, key):
        self.linear = eqx.nn.Linear(16, 3 * 3 + 3 * 4, key=key)

    def __call__(self, x, *, key=None):
        y = self.linear(x.reshape(-1))
        return {"pred_logits": y[:9].reshape(3, 3), "pred_boxes": jax.nn.sigmoid(y[9:].reshape(3, 4))}


def detection_batches(num, size=8):
    """Random images with up to 2 boxes each, the model's own boxes jittered among them."""
    rng = np.random.default_rng(1)
    model = BoxRegressor(key=jax.random.key(2))
    for _ in range(num):
        x = rng.normal(size=(size, 4, 4, 1)).astype(np.float32)
        boxes = np.asarray(jax.vmap(model)(x)["pred_boxes"][:, :2])
        boxes = boxes + rng.normal(scale=0.03, size=boxes.shape).astype(np.float32)
        label = {
            "boxes": boxes,
            "labels": rng.integers(0, 2, size=(size, 2)).astype(np.int32),
            "box_mask": (rng.uniform(size=(size, 2)) < 0.8).astype(np.float32),
        }
        yield {"inputs": x, "label": label, "batch_mask": np.ones(size, np.float32)}


def global_batches(num, size=16):
    rng = np.random.default_rng(0)
    for _ in range(num):
        x = rng.normal(size=(size, 4)).astype(np.float32)
        label = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
        yield {"inputs": x, "label": label, "batch_mask": np.ones(size, np.float32)}


def this_host(batches):
    """This process's rows of each global batch, as a data loader split by host would give."""
    for batch in batches:
        share = len(batch["batch_mask"]) // num_processes
        rows = slice(process_id * share, (process_id + 1) * share)
        yield jax.tree.map(lambda v: v[rows], batch)


assert jax.device_count() == 4 and jax.process_count() == num_processes
task = tasks.ClassificationTask()
state, history = loops.fit(
    DropoutMLP(key=jax.random.key(0)),
    task,
    this_host(global_batches(6)),
    optimizer=optax.sgd(0.1),
    num_steps=6,
    key=jax.random.key(1),
    log_every=3,
    workdir=os.path.join(out, "workdir"),
    checkpoint_every=3,
    progress=False,
)
metrics = loops.evaluate(state.model, task, list(this_host(global_batches(2))))
# Batches already made global arrays by the prefetcher, each spanning both hosts.
prefetched = loops.prefetch_to_mesh(this_host(global_batches(2)), loops.data_mesh())
assert loops.evaluate(state.model, task, prefetched) == metrics
# COCO AP needs every host's detections: each host gathers them all.
detection = loops.evaluate(
    BoxRegressor(key=jax.random.key(2)), tasks.DetectionTask(), list(this_host(detection_batches(3)))
)
params = jax.tree.leaves(eqx.filter(state.model, eqx.is_inexact_array))
# Parameters are replicated: every host holds a full copy on its own devices.
arrays = {f"p{i}": np.asarray(p.addressable_data(0)) for i, p in enumerate(params)}

# FSDP: the middle weight and its momentum are split over the devices of both hosts.
fsdp_state, fsdp_history = loops.fit(
    WideMLP(key=jax.random.key(0)),
    task,
    this_host(global_batches(6)),
    optimizer=optax.sgd(0.1, momentum=0.9),
    num_steps=6,
    key=jax.random.key(1),
    log_every=3,
    workdir=os.path.join(out, "fsdp_workdir"),
    checkpoint_every=3,
    progress=False,
    sharding="fsdp",
)
middle = fsdp_state.model.layers[1].weight
assert {s.data.size for s in middle.addressable_shards} == {middle.size // 4}
assert len(middle.addressable_shards) == devices_per_process
fsdp_metrics = loops.evaluate(fsdp_state.model, task, list(this_host(global_batches(2))))
fsdp_params = jax.tree.leaves(eqx.filter(fsdp_state.model, eqx.is_inexact_array))
arrays.update(
    {
        f"fsdp_p{i}": np.asarray(multihost_utils.process_allgather(p, tiled=True))
        for i, p in enumerate(fsdp_params)
    }
)
if process_id == 0:
    np.savez(
        os.path.join(out, "result.npz"),
        loss=history[-1]["loss"],
        eval_accuracy=metrics["accuracy"],
        eval_loss=metrics["loss"],
        eval_ap=detection["AP"],
        eval_ap50=detection["AP50"],
        eval_box_loss=detection["loss_bbox"],
        fsdp_loss=fsdp_history[-1]["loss"],
        fsdp_eval_loss=fsdp_metrics["loss"],
        **arrays,
    )
