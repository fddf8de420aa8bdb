"""The manifest of a checkpoint: every saved array's path, shape, dtype and checksum.

A manifest is a JSON document saved with the arrays of each checkpoint:

    {"format": "scenic_eqx.checkpoint_manifest/1", "step": 10,
     "items": {"train_state": [{"path": ".model.head.weight", "shape": [10, 64],
                                "dtype": "float32", "checksum": "89ab01cd23ef4567"}, ...],
               "metric_sums": [...]},
     "digest": "<sha256 of the items>"}

Paths are `jax.tree_util.keystr` of each array in its named pytree (`eqx.filter`ed to
arrays, typed PRNG keys as their raw key data). The digest makes a damaged manifest
read as damage, never as a checkpoint of another shape.
"""

import hashlib
import json

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PyTree

from ._checksum import array_checksums

FORMAT = "scenic_eqx.checkpoint_manifest/1"


class CorruptCheckpointError(Exception):
    """A checkpoint whose files are damaged, missing or incomplete: its values cannot be trusted."""


def _is_typed_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def raw_leaves(tree: PyTree) -> list[tuple[str, jax.Array | np.ndarray]]:
    """`(path, array)` of each array of `tree`, typed PRNG keys as their raw key data."""
    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(tree, eqx.is_array))[0]
    return [
        (jax.tree_util.keystr(path), jax.random.key_data(x) if _is_typed_key(x) else x) for path, x in leaves
    ]


def fill(like: PyTree, raw: list[jax.Array]) -> PyTree:
    """`like` with its arrays replaced by `raw` (undoing `raw_leaves`)."""
    arrays, static = eqx.partition(like, eqx.is_array)
    leaves, treedef = jax.tree.flatten(arrays)
    filled = [
        jax.random.wrap_key_data(r, impl=jax.random.key_impl(x)) if _is_typed_key(x) else r
        for r, x in zip(raw, leaves)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, filled), static)


def describe(shape, dtype) -> str:
    """`float32[10, 64]`."""
    return f"{dtype}[{', '.join(str(n) for n in shape)}]"


def _digest(items: dict) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def make_manifest(step: int, raw: dict[str, list[tuple[str, jax.Array]]]) -> dict:
    """The manifest of checkpoint `step` holding the named `raw_leaves` lists.

    Computes every checksum (on every process together, when arrays span several).
    """
    flat = [x for leaves in raw.values() for _, x in leaves]
    checksums = iter(array_checksums(flat))
    items = {
        name: [
            {"path": path, "shape": list(x.shape), "dtype": str(x.dtype), "checksum": next(checksums)}
            for path, x in leaves
        ]
        for name, leaves in raw.items()
    }
    return {"format": FORMAT, "step": step, "items": items, "digest": _digest(items)}


def parse_manifest(text: bytes, step: int, where: str) -> dict:
    """The manifest in `text`, checked whole; raises `CorruptCheckpointError` otherwise."""
    try:
        manifest = json.loads(text)
        intact = (
            manifest["format"] == FORMAT
            and manifest["step"] == step
            and _digest(manifest["items"]) == manifest["digest"]
        )
    except (ValueError, TypeError, KeyError) as error:
        raise CorruptCheckpointError(f"{where}: its manifest is unreadable ({error}).") from error
    if not intact:
        raise CorruptCheckpointError(
            f"{where}: its manifest is damaged (its digest, format or step does not match)."
        )
    return manifest


def check_structure(manifest: dict, name: str, raw: list[tuple[str, jax.Array]], where: str) -> None:
    """Raises `ValueError` unless item `name` of `manifest` has the paths, shapes and dtypes of `raw`.

    Arguments:
        manifest: a parsed manifest.
        name: the item to check.
        raw: the `raw_leaves` of the pytree to restore into.
        where: "Checkpoint 10 in DIR", to start the message with.
    """
    if name not in manifest["items"]:
        raise ValueError(
            f"{where} has no item `{name}`; it holds {sorted(manifest['items'])}. "
            f"Received: `{name}` to restore."
        )
    saved = manifest["items"][name]
    hint = (
        " It was written by another model, optimizer or precision: restore into a state "
        "built the same way, or start again in a new directory."
    )
    for entry, (path, x) in zip(saved, raw):
        if entry["path"] != path:
            break
        if entry["shape"] != list(x.shape) or entry["dtype"] != str(x.dtype):
            raise ValueError(
                f"{where} does not match the state to restore: at `{name}{path}` the checkpoint "
                f"has {describe(entry['shape'], entry['dtype'])}, the state "
                f"{describe(x.shape, x.dtype)}.{hint}"
            )
    else:
        if len(saved) == len(raw):
            return
    saved_paths, like_paths = [e["path"] for e in saved], [p for p, _ in raw]
    in_saved, in_like = set(saved_paths), set(like_paths)
    only_saved = [p for p in saved_paths if p not in in_like]
    only_like = [p for p in like_paths if p not in in_saved]
    # Name the one of the two that comes first in tree order.
    first_saved = saved_paths.index(only_saved[0]) if only_saved else len(saved)
    first_like = like_paths.index(only_like[0]) if only_like else len(raw)
    counts = f"The checkpoint has {len(saved)} arrays in `{name}`, the state {len(raw)}"
    if only_saved and first_saved <= first_like:
        first = f"`{name}{only_saved[0]}` is in the checkpoint but not in the state to restore"
    elif only_like:
        first = f"`{name}{only_like[0]}` is in the state to restore but not in the checkpoint"
    else:
        first = "the same paths come in another order"
    raise ValueError(f"{where} does not match the state to restore: {first}. {counts}.{hint}")


def first_mismatch(manifest: dict, name: str, checksums: list[str]) -> str | None:
    """The path of the first array of item `name` whose checksum differs from the manifest's."""
    for entry, checksum in zip(manifest["items"][name], checksums):
        if entry["checksum"] != checksum:
            return entry["path"]
    return None
