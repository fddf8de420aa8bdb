"""Data parallelism over a `jax.sharding.Mesh`: batches split on its `"data"` axis.

Multi-host runs start with `jax.distributed.initialize()`; each host then passes its
own slice of the global batch, and `shard_batch` assembles the global array. A mesh may
have other axes (a `"model"` axis for tensor parallelism): batches are replicated along
them.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named `"data"` over `devices` (default: every device of every host)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


@functools.lru_cache(maxsize=16)
def num_local_devices(mesh: Mesh) -> int:
    """How many distinct slices of the `"data"` axis this host's devices hold.

    On a one-axis mesh, the number of this host's devices; on a `("data", "model")`
    mesh, the number of this host's rows of the data axis.
    """
    data_axis = mesh.axis_names.index("data")
    local = np.vectorize(lambda d: d.process_index == jax.process_index())(mesh.devices)
    rows = np.nonzero(local)[data_axis]
    return len(set(rows.tolist()))


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Copies every array of `tree` onto every device of `mesh`.

    The copy never aliases the input, so the trainer may donate it without invalidating
    the caller's arrays.
    """
    sharding = NamedSharding(mesh, PartitionSpec())
    arrays, static = eqx.partition(tree, eqx.is_array)
    if jax.process_count() == 1:
        # `may_alias=False` alone still lets one shard share the caller's buffer: copy first.
        arrays = jax.device_put(jax.tree.map(jnp.copy, arrays), sharding)
    else:
        arrays = jax.tree.map(lambda x: _replicate_across_hosts(x, sharding), arrays)
    return eqx.combine(arrays, static)


def _replicate_across_hosts(x: jax.Array, sharding: NamedSharding) -> jax.Array:
    """A global array holding this host's value of `x` on every device (hosts agree on it)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _replicate_across_hosts(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def batch_sharding(mesh: Mesh, *, stacked: bool = False) -> NamedSharding:
    """Arrays split along their batch axis over the mesh's `"data"` axis.

    The batch axis is the leading one, or the second with `stacked=True` (batches
    stacked for several steps per dispatch, `[steps, batch, ...]`).
    """
    return NamedSharding(mesh, PartitionSpec(None, "data") if stacked else PartitionSpec("data"))


def _check_divisible(x, local: int, axis: int = 0) -> None:
    if x.shape[axis] % local:
        raise ValueError(
            f"The per-host batch size must be divisible by the number of local devices "
            f"on the mesh's data axis (={local}). Received: a batch of {x.shape[axis]}."
        )


def shard_batch(batch: PyTree, mesh: Mesh, *, stacked: bool = False) -> PyTree:
    """Turns this host's batch (numpy or jax arrays) into global arrays split on `"data"`.

    Arrays that are already global and split on `"data"` are returned as they are.

    Arguments:
        batch: this host's rows of the global batch.
        mesh: the device mesh.
        stacked: the arrays are `[steps, batch, ...]`, batches of several steps.

    Raises:
        ValueError: if the host batch size does not divide by the host's device count.
    """
    sharding = batch_sharding(mesh, stacked=stacked)
    local = num_local_devices(mesh)

    def put(x):
        if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
            # Already a global array split on "data" (`loops.prefetch_to_mesh` makes them).
            return x
        _check_divisible(x, local, axis=int(stacked))
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, batch)


def host_batch(batch: PyTree, mesh: Mesh, *, stacked: bool = False) -> PyTree:
    """This host's batch, ready for a step jitted with `in_shardings=batch_sharding(mesh)`.

    With one process, the batch goes to the step as it is: the jitted call transfers
    and splits it on its fast path, far cheaper than building global arrays first.
    With several processes, each host's slice becomes part of a global array.
    """
    if jax.process_count() > 1:
        return shard_batch(batch, mesh, stacked=stacked)
    local = num_local_devices(mesh)
    for x in jax.tree.leaves(batch):
        _check_divisible(x, local, axis=int(stacked))
    return batch
