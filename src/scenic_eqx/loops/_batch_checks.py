"""Host-side checks of a batch before it reaches the step: keys, sizes, mask, dtypes.

A batch is a dict of arrays with a leading batch axis: `inputs`, `label` (or a label
pytree) and optionally `batch_mask`. Everything checked here is static (keys, shapes,
dtypes), so it costs no device work, reads no values and works on global arrays of
several hosts too. A mistake then fails before tracing, with a message naming the batch,
the entry, what was expected and what was received, instead of a bare `KeyError` or a
shape error from inside the traced step.
"""

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp


def _entry(path) -> str:
    """`label["boxes"]` from a `jax.tree_util` key path."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(f"[{key.key!r}]" if parts else str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(f"[{key.idx}]")
        else:
            parts.append(str(key))
    return "".join(parts) or "(the batch itself)"


def check_batch(
    batch: object,
    *,
    where: str,
    required: Sequence[str] = ("inputs", "label"),
    num_devices: int | None = None,
) -> int:
    """Checks one batch's structure; returns its batch size.

    Arguments:
        batch: the batch, as the iterable yielded it.
        where: how messages name the batch, e.g. "batch 3 of `train_batches`".
        required: the keys the batch must have (the model reads `inputs`, most tasks
            `label`).
        num_devices: if given, the number of devices the batch is split over, which its
            size must be a multiple of (`loops.evaluate` pads instead, so it passes none).

    Returns:
        The batch size: the leading size shared by every array.

    Raises:
        TypeError: the batch is not a dict, or an entry is not a numeric array.
        ValueError: a required key is missing (the message lists the keys the batch
            has), arrays disagree on the batch size, `batch_mask` has the wrong shape,
            or the size is not a multiple of `num_devices`.
    """
    if not isinstance(batch, Mapping):
        raise TypeError(
            f'{where} must be a dict of arrays ("inputs", "label", optional '
            f'"batch_mask"). Received: {type(batch).__name__}.'
        )
    missing = [key for key in required if key not in batch]
    if missing:
        raise ValueError(
            f"{where} must have the entries {', '.join(map(repr, required))}. Received: a "
            f"batch with keys {sorted(map(str, batch))}, without {', '.join(map(repr, missing))}."
        )
    leaves = jax.tree_util.tree_leaves_with_path(dict(batch))
    if not leaves:
        raise ValueError(f"{where} must hold arrays. Received: an empty batch.")
    shapes = {}
    for path, leaf in leaves:
        name = _entry(path)
        dtype = getattr(leaf, "dtype", None)
        if getattr(leaf, "shape", None) is None or dtype is None:
            raise TypeError(
                f"{where}: every entry must be a numpy or jax array. Received: "
                f"{type(leaf).__name__} for `{name}`."
            )
        if not (jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)):
            raise TypeError(
                f"{where}: every entry must hold numbers or booleans. Received: dtype {dtype} for `{name}`."
            )
        if not leaf.shape:
            raise ValueError(
                f"{where}: every entry must have a leading batch axis. Received: a scalar for `{name}`."
            )
        shapes[name] = tuple(leaf.shape)
    sizes = {shape[0] for shape in shapes.values()}
    if len(sizes) > 1:
        listing = ", ".join(f"`{name}` {shape}" for name, shape in shapes.items())
        raise ValueError(
            f"{where}: every entry must have the same leading (batch) size. Received: {listing}."
        )
    (batch_size,) = sizes
    if "batch_mask" in batch:
        # A co-training batch (`data.co_training_batches`) has a mask per dataset.
        names = list(batch["batch_mask"]) if isinstance(batch["batch_mask"], Mapping) else [None]
        for name in names:
            suffix = "" if name is None else f"[{name!r}]"
            _check_mask(shapes, f"batch_mask{suffix}", f"label{suffix}", batch_size, where)
    if num_devices is not None and batch_size % num_devices:
        raise ValueError(
            f"{where}: the batch size must be a multiple of the number of devices "
            f"(={num_devices}), which split it. Received: a batch of {batch_size}."
        )
    return batch_size


def _check_mask(shapes: dict, mask: str, label: str, batch_size: int, where: str) -> None:
    mask_shape, label_shape = shapes.get(mask), shapes.get(label)
    allowed = [(batch_size,)] + ([label_shape] if label_shape else [])
    if mask_shape not in allowed:
        expected = " or ".join(str(shape) for shape in dict.fromkeys(allowed))
        raise ValueError(
            f"{where}: `{mask}` must have shape {expected} (one weight per example, "
            f"or per label entry). Received: shape {mask_shape}."
        )


def examples_per_batch(batch: Mapping) -> int:
    """The examples a checked batch holds: its leading size, times the number of
    datasets of a co-training batch (one batch of each, `data.co_training_batches`)."""
    size = len(jax.tree.leaves(batch)[0])
    mask = batch.get("batch_mask")
    return size * len(mask) if isinstance(mask, Mapping) else size
