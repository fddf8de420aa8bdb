"""Frozen features of a dataset: a model's representation of every real example, on the host.

Transfer evaluations (few-shot linear regression, linear probes) fit a classifier on the
representation of a frozen model. `extract_features` computes it batch by batch, jitted and
vmapped over the mesh as `loops.evaluate` runs a model, in inference mode, and gathers the
rows of every device and host, dropping the padding (`batch_mask` 0).
"""

from collections.abc import Callable, Iterable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jaxtyping import Array, Float, PyTree

from ..data import pad_batch
from ._batch_checks import check_batch
from ._evaluate import _on_mesh
from ._sharding import data_mesh, num_local_devices, shard_batch
from ._train_state import has_state

RepresentationFn = Callable[..., Float[Array, " dim"]]


def pre_logits(model: eqx.Module, x: PyTree, model_state: eqx.nn.State | None = None) -> Float[Array, " dim"]:
    """The default representation: `model.features(x)["pre_logits"]`, the pooled vector
    before the classification head (every image family of `nn` exposes it: ViT, MLP-Mixer,
    ResNet, BiT, SimpleCNN, ViViT).

    Arguments:
        model: a model with a `features` method returning a dict with `"pre_logits"`;
            called as `model.features(x)`, or `model.features(x, model_state)` returning
            `(features, state)` for a model with state (ResNet's BatchNorm).
        x: one example.
        model_state: the model's `eqx.nn.State`, or `None`.

    Returns:
        The `[dim]` representation of `x`.
    """
    if model_state is None:
        features = model.features(x)
    else:
        features, _ = model.features(x, model_state)
    if not isinstance(features, dict) or "pre_logits" not in features:
        received = sorted(features) if isinstance(features, dict) else type(features).__name__
        raise ValueError(
            f"`{type(model).__name__}.features` must return a dict with a 'pre_logits' entry to be "
            f"the default representation; pass a `representation_fn` otherwise. Received: {received}."
        )
    return features["pre_logits"]


@eqx.filter_jit
def _batch_features(representation_fn, model, model_state, inputs):
    if model_state is None:
        one = lambda x: representation_fn(model, x)
    else:
        one = lambda x: representation_fn(model, x, model_state)
    return jax.vmap(one, axis_name="batch")(inputs).astype(jnp.float32)


def _check_labels(label: object, where: str) -> None:
    dtype = getattr(label, "dtype", None)
    if getattr(label, "ndim", None) != 1 or not np.issubdtype(dtype, np.integer):
        shape = getattr(label, "shape", None)
        raise ValueError(
            f"{where}: `label` must hold integer class indices of shape [batch]. "
            f"Received: {type(label).__name__} of shape {shape} and dtype {dtype}."
        )


def extract_features(
    model: eqx.Module,
    batches: Iterable[dict] | Callable[[], Iterable[dict]],
    *,
    representation_fn: RepresentationFn | None = None,
    model_state: eqx.nn.State | None = None,
    mesh: Mesh | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The representation and class label of every real example of `batches`.

    Each batch is padded to a multiple of this host's devices, split over the mesh's
    `"data"` axis and run through `representation_fn` (vmapped with `axis_name="batch"`,
    jitted, on `eqx.nn.inference_mode(model)`); the rows of every device and host are
    gathered, so every host receives the features of the whole dataset, in the same
    order, and the rows with `batch_mask` 0 are dropped.

    Arguments:
        model: a one-example model. Arrays already on the mesh's devices (the parameters
            `fit` holds) stay where they are; the others are replicated.
        batches: this host's batches (an iterable, or a zero-argument callable returning
            one): dicts with `inputs`, `label` (int class indices `[batch]`) and optional
            `batch_mask` (`[batch]`, 0.0 for padding).
        representation_fn: `representation_fn(model, x) -> [dim]` on one example `x`, or
            `representation_fn(model, x, model_state)` for a model with state; by default
            `pre_logits` (the model's `features(x)["pre_logits"]`).
        model_state: the model's `eqx.nn.State` (BatchNorm statistics), if it has any.
        mesh: the device mesh (default: every device, on a `"data"` axis).

    Returns:
        `(features, labels)`: float32 `[examples, dim]` and the labels `[examples]`, numpy
        arrays holding the real examples of every host.

    Raises:
        ValueError: `batches` is empty, a batch lacks `inputs` or `label`, a label is not
            an integer vector, or the model has no `features` method and no
            `representation_fn` was given.
    """
    if representation_fn is None:
        if not callable(getattr(model, "features", None)):
            raise ValueError(
                f"`representation_fn` is needed: the model ({type(model).__name__}) has no `features` "
                f"method giving its pre-logits. Received: representation_fn=None."
            )
        representation_fn = pre_logits
    mesh = data_mesh() if mesh is None else mesh
    if model_state is None and has_state(model):
        model_state = eqx.nn.State(model)
    model, model_state = _on_mesh((eqx.nn.inference_mode(model), model_state), mesh)
    if callable(batches) and not isinstance(batches, Iterable):
        batches = batches()
    local = num_local_devices(mesh)
    features, labels = [], []
    for index, batch in enumerate(batches):
        where = f"Batch {index} of the transfer data"
        size = check_batch(batch, where=where, required=("inputs", "label"))
        _check_labels(batch["label"], where)
        keep = {name: batch[name] for name in ("inputs", "label", "batch_mask") if name in batch}
        placed = shard_batch(pad_batch(keep, -(-size // local) * local), mesh)
        rows = _batch_features(representation_fn, model, model_state, placed["inputs"])
        if rows.ndim != 2:
            raise ValueError(
                f"`representation_fn` must return a vector [dim] per example. Received: "
                f"shape {rows.shape[1:]} per example."
            )
        rows, label, mask = multihost_utils.process_allgather(
            (rows, placed["label"], placed["batch_mask"]), tiled=True
        )
        real = np.asarray(mask) > 0
        features.append(np.asarray(rows)[real])
        labels.append(np.asarray(label)[real])
    if not features:
        raise ValueError("The transfer data must yield at least one batch. Received: an empty iterable.")
    return np.concatenate(features), np.concatenate(labels)
