"""`fit` with sharded parameters: FSDP and tensor parallelism train like replication."""

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

from scenic_eqx import loops, nn, tasks


def vit(key):
    # hidden 256 and MLP 512: attention (256x256) and MLP weights reach FSDP's threshold.
    return nn.ViT(4, 4, 256, 2, 4, 512, 8, in_channels=1, key=key)


def image_batches(num, batch_size=16, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(num):
        x = rng.normal(size=(batch_size, 8, 8, 1)).astype(np.float32)
        label = (x[:, :4].mean((1, 2, 3)) > 0).astype(np.int32) + 2 * (x[:, :, :4].mean((1, 2, 3)) > 0)
        yield {"inputs": x, "label": label.astype(np.int32), "batch_mask": np.ones(batch_size, np.float32)}


def train(sharding, mesh=None, num_steps=10, **kwargs):
    # Momentum SGD: Adam would turn rounding noise in near-zero gradients (which the
    # shardings sum in other orders) into whole steps.
    return loops.fit(
        vit(jax.random.key(0)), tasks.ClassificationTask(), image_batches(num_steps),
        optimizer=optax.sgd(0.05, momentum=0.9), num_steps=num_steps, key=jax.random.key(1), log_every=5,
        progress=False, sharding=sharding, mesh=mesh, **kwargs,
    )  # fmt: skip


def arrays(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))]


@pytest.fixture(scope="module")
def replicated():
    return train("replicated")


def test_fsdp_and_tensor_parallel_train_like_replication(replicated):
    reference, _ = replicated
    fsdp, _ = train("fsdp")
    megatron, _ = train("megatron", mesh=loops.device_mesh(model_axis_size=2))
    for state in (fsdp, megatron):
        for a, b in zip(arrays(state.model), arrays(reference.model)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Each device holds an eighth of every large parameter and of its momentum.
    large = [x for x in jax.tree.leaves(eqx.filter((fsdp.model, fsdp.opt_state), eqx.is_inexact_array))
             if x.size >= loops.FSDP_MIN_SIZE]  # fmt: skip
    assert len(large) == 2 * 2 * 6  # (parameter, momentum) x 2 blocks x (q, k, v, out, dense1, dense2)
    for x in large:
        assert {shard.data.size for shard in x.addressable_shards} == {x.size // 8}
    weight = megatron.model.encoder.blocks[0].mlp.dense1.weight
    assert weight.sharding.spec == jax.sharding.PartitionSpec("model", None)
    assert {shard.data.shape for shard in weight.addressable_shards} == {(256, 256)}


def test_fsdp_lowers_the_step_memory():
    model = nn.ViT(4, 4, 256, 4, 4, 1024, 16, in_channels=1, scan_layers=True, key=jax.random.key(0))
    optimizer = optax.adam(1e-3)
    step = loops.make_train_step(tasks.ClassificationTask(), optimizer)
    batch = next(image_batches(1, batch_size=8))
    batch["inputs"] = np.zeros((8, 16, 16, 1), np.float32)
    mesh = loops.data_mesh()
    memory = {}
    for sharding in ("replicated", "fsdp"):
        state, _ = loops.init_placed_train_state(
            model, optimizer, key=jax.random.key(1), mesh=mesh, sharding=sharding
        )
        in_shardings = (
            jax.tree.map(lambda x: x.sharding, eqx.filter(state, eqx.is_array)),
            loops._sharding.batch_sharding(mesh),
        )
        dynamic, static = eqx.partition(state, eqx.is_array)
        jitted = jax.jit(lambda d, b: step(eqx.combine(d, static), b)[1], in_shardings=in_shardings)
        memory[sharding] = jitted.lower(dynamic, batch).compile().memory_analysis()
    assert memory["fsdp"].argument_size_in_bytes < memory["replicated"].argument_size_in_bytes / 4
    assert memory["fsdp"].temp_size_in_bytes < memory["replicated"].temp_size_in_bytes


def test_fsdp_checkpoint_restores_replicated_and_on_four_devices(tmp_path, replicated):
    fsdp, fsdp_history = train("fsdp", workdir=tmp_path, checkpoint_every=10)
    four = Mesh(np.asarray(jax.devices()[:4]), ("data",))
    for sharding, mesh in (("replicated", None), ("replicated", four), ("fsdp", four)):
        restored, history = train(sharding, mesh=mesh, workdir=tmp_path)
        # A finished run: nothing to do but restore, and read its history back.
        assert int(restored.step) == 10
        assert [r["step"] for r in history] == [r["step"] for r in fsdp_history]
        devices = set(four.devices.flat) if mesh is four else set(jax.devices())
        for a, b in zip(jax.tree.leaves(eqx.filter(restored.model, eqx.is_inexact_array)),
                        jax.tree.leaves(eqx.filter(fsdp.model, eqx.is_inexact_array))):  # fmt: skip
            assert a.sharding.device_set == devices
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
