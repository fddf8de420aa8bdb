"""`prefetch_to_mesh`: batches arrive sharded on `"data"`, equal to the source, ahead of use."""

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from scenic_eqx import loops, tasks
from scenic_eqx.loops import prefetch_to_mesh


def _batches(n, batch_size=16, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        inputs = rng.normal(size=(batch_size, 4)).astype(np.float32)
        yield {
            "inputs": inputs,
            "label": (inputs[:, 0] > 0).astype(np.int32),
            "batch_mask": np.ones(batch_size, np.float32),
            "nested": {"boxes": rng.normal(size=(batch_size, 3, 4)).astype(np.float32)},
        }


def test_yields_sharded_copies_of_the_source_batches():
    mesh = loops.data_mesh()
    assert mesh.devices.size == 8
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    out = list(prefetch_to_mesh(_batches(5), mesh, size=2))
    assert len(out) == 5
    for got, expected in zip(out, _batches(5)):
        assert jax.tree.structure(got) == jax.tree.structure(expected)
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
            assert isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim)
            assert len(x.addressable_shards) == 8 and x.addressable_shards[0].data.shape[0] == 2
            np.testing.assert_array_equal(np.asarray(x), y)


@pytest.mark.parametrize("size", [1, 3])
def test_reads_size_batches_ahead(size):
    pulled = []

    def source():
        for i, batch in enumerate(_batches(6)):
            pulled.append(i)
            yield batch

    it = prefetch_to_mesh(source(), loops.data_mesh(), size=size)
    assert pulled == []  # nothing is read before the first `next`
    next(it)
    # The yielded batch plus `size` more in flight.
    assert pulled == list(range(size + 1))
    assert len(list(it)) == 5 and pulled == list(range(6))


@pytest.mark.parametrize("size", [0, -1, True])
def test_bad_size(size):
    with pytest.raises(ValueError, match=r"`size` \(=.*\) must be a positive integer"):
        prefetch_to_mesh(_batches(1), loops.data_mesh(), size=size)


def test_shard_batch_leaves_global_arrays_alone():
    mesh = loops.data_mesh()
    (batch,) = prefetch_to_mesh(_batches(1), mesh)
    again = loops.shard_batch(batch, mesh)
    for x, y in zip(jax.tree.leaves(again), jax.tree.leaves(batch)):
        assert x is y
    # Host arrays and arrays on one device are still sharded.
    single = jax.device_put(np.zeros((16, 2), np.float32), jax.devices()[0])
    sharded = loops.shard_batch({"x": single}, mesh)["x"]
    assert sharded is not single and len(sharded.addressable_shards) == 8


class _Linear(eqx.Module):
    layer: eqx.nn.Linear

    def __init__(self, *, key):
        self.layer = eqx.nn.Linear(4, 2, key=key)

    def __call__(self, x, *, key=None):
        return self.layer(x)


def test_fit_takes_prefetched_batches(getkey):
    model, mesh = _Linear(key=getkey()), loops.data_mesh()

    def run(batches):
        state, _ = loops.fit(
            model,
            tasks.ClassificationTask(),
            batches,
            optimizer=optax.sgd(0.1),
            num_steps=4,
            key=jax.random.key(0),
            mesh=mesh,
            progress=False,
        )
        return jax.tree.leaves(eqx.filter(state.model, eqx.is_array))

    def flat(batches):
        return ({k: v for k, v in b.items() if k != "nested"} for b in batches)

    host = run(flat(_batches(4)))
    prefetched = run(prefetch_to_mesh(flat(_batches(4)), mesh))
    for x, y in zip(host, prefetched):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(host[0]), np.asarray(model.layer.weight))


def test_evaluate_takes_prefetched_batches(getkey):
    model, mesh = _Linear(key=getkey()), loops.data_mesh()
    batches = [{k: v for k, v in b.items() if k != "nested"} for b in _batches(3)]
    expected = loops.evaluate(model, tasks.ClassificationTask(), batches)
    prefetched = loops.evaluate(model, tasks.ClassificationTask(), prefetch_to_mesh(batches, mesh))
    assert prefetched == expected
