"""Exact evaluation: value sums and normalizers summed over devices and batches, then divided."""

from collections.abc import Callable, Iterable

import equinox as eqx
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from ..data import pad_batch
from ..tasks import AbstractTask
from ._batch_checks import check_batch
from ._precision import Precision, get_precision
from ._sharding import batch_sharding, data_mesh, num_local_devices, replicate, shard_batch
from ._steps import inference_outputs, make_eval_step
from ._train_state import has_state


@eqx.filter_jit
def _eval_sums(task, model, model_state, batch, precision):
    return make_eval_step(task, precision=precision)(model, model_state, batch)


@eqx.filter_jit
def _eval_sums_and_evaluator_inputs(task, model, model_state, batch, precision):
    outputs = inference_outputs(model, model_state, batch, precision)
    return task.metrics(outputs, batch), task.evaluator_inputs(outputs, batch)


def evaluate(
    model: eqx.Module,
    task: AbstractTask,
    batches: Iterable[dict] | Callable[[], Iterable[dict]],
    *,
    model_state: eqx.nn.State | None = None,
    mesh: Mesh | None = None,
    precision: str | Precision = "float32",
) -> dict[str, float]:
    """Evaluates `model` on every batch of `batches`, in inference mode.

    Each host passes its own batches. A batch whose size does not divide by the host's
    device count is padded with examples of `batch_mask` 0, which count nowhere; so the
    result does not depend on the batch size.

    Arguments:
        model: a one-example model. Arrays already laid out on the mesh's devices (the
            sharded parameters `fit` returns) stay where they are; others are replicated.
        task: supplies `metrics(outputs, batch) -> {name: (value_sum, normalizer)}`.
        batches: an iterable of batch dicts, or a zero-argument callable returning one.
        model_state: the model's `eqx.nn.State` (BatchNorm statistics), if it has any.
        mesh: the device mesh (default: every device, on a `"data"` axis).
        precision: the compute policy (`"float32"`, `"bfloat16"` or a `Precision`);
            outputs reach the task in float32 either way.

    Returns:
        `task.summarize` of the metric sums over the whole of `batches`: by default
        `{name: value_sum / normalizer}`, as Python floats; with the `result()` of the
        task's evaluator (`task.make_evaluator()`, e.g. COCO AP) when it has one.
    """
    mesh = data_mesh() if mesh is None else mesh
    if model_state is None and has_state(model):
        model_state = eqx.nn.State(model)
    model, model_state = _on_mesh((model, model_state), mesh)
    return evaluate_on_mesh(model, model_state, task, batches, mesh, precision=precision)


def _on_mesh(tree, mesh: Mesh):
    """`tree` with its arrays on `mesh`: those already spread over the mesh's devices as
    they are (e.g. FSDP-sharded parameters of several hosts), the others replicated."""
    devices = set(mesh.devices.flat)
    placed = lambda x: isinstance(x, jax.Array) and x.sharding.device_set == devices
    on_mesh, elsewhere = eqx.partition(tree, placed)
    return eqx.combine(on_mesh, replicate(elsewhere, mesh))


def evaluate_on_mesh(model, model_state, task, batches, mesh, *, precision="float32") -> dict[str, float]:
    """`evaluate` for a model already placed on `mesh` (replicated or sharded, as in `fit`)."""
    precision = get_precision(precision)
    if callable(batches) and not isinstance(batches, Iterable):
        batches = batches()
    local = num_local_devices(mesh)
    evaluator = task.make_evaluator()
    totals = None
    sharding = batch_sharding(mesh)
    for index, batch in enumerate(batches):
        check_batch(batch, where=f"Batch {index} of `batches`", required=("inputs",))
        already_global = all(
            isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim)
            for x in jax.tree.leaves(batch)
        )
        if not already_global:
            # A host batch is padded here; a global one (`loops.prefetch_to_mesh`) was
            # split across devices, so padded, before: it may span several hosts,
            # whose rows this host cannot read.
            size = len(jax.tree.leaves(batch)[0])
            batch = shard_batch(pad_batch(batch, -(-size // local) * local), mesh)
        if evaluator is None:
            sums = _eval_sums(task, model, model_state, batch, precision)
        else:
            sums, inputs = _eval_sums_and_evaluator_inputs(task, model, model_state, batch, precision)
            # Every host scores the whole evaluation set: gather all hosts' examples.
            evaluator.update(multihost_utils.process_allgather(inputs, tiled=True))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    if totals is None:
        raise ValueError("`batches` must yield at least one batch to evaluate. Received: an empty iterable.")
    results = task.summarize(jax.device_get(totals))
    if evaluator is not None:
        results.update(evaluator.result())
    return results
