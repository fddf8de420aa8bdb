"""Device prefetch: keep the next batches already sharded over the mesh's `"data"` axis."""

import collections
import itertools
import numbers
from collections.abc import Iterable, Iterator
from typing import Any

from ._sharding import shard_batch


def prefetch_to_mesh(batches: Iterable[Any], mesh, size: int = 2) -> Iterator[Any]:
    """Yields the batches of `batches` as global arrays split on `mesh`'s `"data"` axis.

    The next `size` batches are sent ahead while the caller computes on the current
    one (transfers run asynchronously), so a host-to-device copy overlaps with the
    previous step. The arrays yield exactly the source batches' values; `loops.fit`
    and `loops.evaluate` take them as they take host batches.

    Arguments:
        batches: host-local batches (pytrees of numpy or JAX arrays with a leading batch
            axis divisible by the host's devices in `mesh`), e.g. a `Dataset.train_iter`.
        mesh: a `jax.sharding.Mesh` with a `"data"` axis (`loops.data_mesh()`).
        size: how many batches to keep in flight ahead of the one yielded.

    Returns:
        An iterator of global `jax.Array` pytrees, one per source batch.
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"`size` (={size!r}) must be a positive integer.")
    return _prefetch(iter(batches), mesh, int(size))


def _prefetch(batches: Iterator[Any], mesh, size: int) -> Iterator[Any]:
    queue = collections.deque()

    def enqueue(n: int) -> None:
        for batch in itertools.islice(batches, n):
            queue.append(shard_batch(batch, mesh))

    enqueue(size)
    while queue:
        batch = queue.popleft()
        # Send the next batch before handing this one out: its copy overlaps the step.
        enqueue(1)
        yield batch
