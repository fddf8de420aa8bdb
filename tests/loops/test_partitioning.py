"""Parameter sharding by rules (`_partitioning`) and placement (`_placement`): meshes,
FSDP, Megatron rules, optimizer and train state, `place` and `create_sharded`.

Runs on the 8 fake CPU devices of conftest. Shardings are read back from the arrays
themselves (`addressable_shards`), and sharded forward and backward passes are compared
with replicated ones, so the specs are proven usable by XLA's SPMD partitioner.
"""

import functools
import math
import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from scenic_eqx import nn
from scenic_eqx.loops import TrainState, init_train_state, partition_trainable
from scenic_eqx.loops._partitioning import (
    MEGATRON_RULES,
    device_mesh,
    opt_state_shardings,
    parameter_shardings,
    train_state_shardings,
)
from scenic_eqx.loops._placement import create_sharded, init_placed_train_state, place

_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _specs(shardings) -> dict[str, P]:
    """`{path: spec}` of every sharding in a tree."""
    return {
        jax.tree_util.keystr(path).removeprefix("."): s.spec
        for path, s in jax.tree_util.tree_leaves_with_path(shardings)
    }


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, jax.ShapeDtypeStruct))


def _non_replicated(shardings) -> dict[str, P]:
    return {path: spec for path, spec in _specs(shardings).items() if spec != P()}


def _vit(key, **overrides):
    kwargs = dict(
        num_classes=5,
        patch_size=4,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        mlp_dim=256,
        image_size=16,
    )
    return nn.ViT(**{**kwargs, **overrides}, key=key)


# ----------------------------------------------------------------------------- meshes


def test_device_mesh_shapes_and_order():
    mesh = device_mesh()
    assert mesh.axis_names == ("data", "model")
    assert dict(mesh.shape) == {"data": 8, "model": 1}
    assert mesh.axis_types == (AxisType.Auto, AxisType.Auto)
    mesh = device_mesh(2)
    assert dict(mesh.shape) == {"data": 4, "model": 2}
    # Row-major over the devices in (host, id) order: a "model" group is consecutive devices.
    ids = [[d.id for d in row] for row in mesh.devices]
    assert ids == [[0, 1], [2, 3], [4, 5], [6, 7]]
    reversed_mesh = device_mesh(4, devices=jax.devices()[::-1])
    assert [d.id for d in reversed_mesh.devices[0]] == [7, 6, 5, 4]


@pytest.mark.parametrize("size", [3, 0, 16])
def test_device_mesh_rejects_a_size_that_does_not_divide(size):
    with pytest.raises(ValueError, match=rf"`model_axis_size` \(={size}\).*devices \(=8\)"):
        device_mesh(size)


# ----------------------------------------------------------------------------- FSDP


def test_fsdp_shards_every_large_leaf_over_8_devices(getkey):
    mesh = device_mesh()
    min_size = 4096
    model = create_sharded(
        lambda key: _vit(key), getkey(), mesh=mesh, sharding="fsdp", fsdp_min_size=min_size
    )
    params = partition_trainable(model)[0]
    _, report = parameter_shardings(params, mesh, "fsdp", fsdp_min_size=min_size)
    num_sharded = 0
    for path, x in jax.tree_util.tree_leaves_with_path(params):
        name = jax.tree_util.keystr(path).removeprefix(".")
        shard_sizes = [s.data.size for s in x.addressable_shards]
        assert len(shard_sizes) == 8
        if x.size >= min_size:
            # Measured on the array: each device holds exactly one eighth, all distinct.
            assert shard_sizes == [x.size // 8] * 8, name
            assert len({str(s.index) for s in x.addressable_shards}) == 8, name
            assert name not in report
            num_sharded += 1
        else:
            assert shard_sizes == [x.size] * 8, name
            assert report[name] == x.shape
    # 2 blocks x (q, k, v, out, dense1, dense2).
    assert num_sharded == 12
    assert len(report) == sum(x.size < min_size for x in jax.tree.leaves(params))
    specs = _specs(parameter_shardings(params, mesh, "fsdp", fsdp_min_size=min_size)[0])
    # The largest dimension: dense1 [256, 64] on its rows, dense2 [64, 256] on its columns;
    # a tie (query [64, 64]) goes to the last dimension.
    assert specs["encoder.blocks[0].mlp.dense1.weight"] == P("data", None)
    assert specs["encoder.blocks[0].mlp.dense2.weight"] == P(None, "data")
    assert specs["encoder.blocks[1].attention.query.weight"] == P(None, "data")


def test_fsdp_picks_the_largest_divisible_dimension_and_reports_the_rest():
    mesh = device_mesh(2)  # "data" has 4 devices.
    tree = {
        "a": jax.ShapeDtypeStruct((6, 12, 10), jnp.float32),  # 12 is the largest divisible.
        "b": jax.ShapeDtypeStruct((3, 5, 7), jnp.float32),  # nothing divides by 4.
        "c": jax.ShapeDtypeStruct((8,), jnp.float32),  # too small.
        "d": jax.ShapeDtypeStruct((), jnp.int32),
        "e": "not an array",
    }
    shardings, report = parameter_shardings(tree, mesh, "fsdp", fsdp_min_size=64)
    assert shardings["a"].spec == P(None, "data", None)
    assert shardings["b"].spec == P() and shardings["c"].spec == P()
    assert shardings["e"] is None
    assert report == {"['b']": (3, 5, 7), "['c']": (8,), "['d']": ()}


def test_default_fsdp_min_size_keeps_a_tiny_model_replicated():
    mesh = device_mesh()
    shapes = eqx.filter_eval_shape(_vit, jax.random.key(0))
    shardings, report = parameter_shardings(shapes, mesh, "fsdp")
    assert _non_replicated(shardings) == {}
    assert len(report) == len(jax.tree.leaves(eqx.filter(shapes, _is_array)))


# ----------------------------------------------------------------------------- Megatron

_BLOCK = {
    "attention.query.weight": P("model", None), "attention.query.bias": P("model"),
    "attention.key.weight": P("model", None), "attention.key.bias": P("model"),
    "attention.value.weight": P("model", None), "attention.value.bias": P("model"),
    "attention.out.weight": P(None, "model"),
    "mlp.dense1.weight": P("model", None), "mlp.dense1.bias": P("model"),
    "mlp.dense2.weight": P(None, "model"),
}  # fmt: skip


def _under(prefix: str, table: dict[str, P]) -> dict[str, P]:
    return {f"{prefix}.{k}": v for k, v in table.items()}


def _vit_expected(scan: bool) -> dict[str, P]:
    if scan:  # One stacked block: the leading layer axis is not sharded.
        blocks = {k: P(None, *v) for k, v in _under("encoder.blocks", _BLOCK).items()}
    else:
        blocks = {**_under("encoder.blocks[0]", _BLOCK), **_under("encoder.blocks[1]", _BLOCK)}
    return {**blocks, **_under("map_head", _BLOCK)}


@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
def test_megatron_specs_on_vit(scan):
    mesh = device_mesh(2)
    shapes = eqx.filter_eval_shape(_vit, jax.random.key(0), classifier="map", scan_layers=scan)
    shardings, report = parameter_shardings(shapes, mesh, "megatron")
    assert _non_replicated(shardings) == _vit_expected(scan)
    assert report == {}


def test_megatron_specs_on_factorized_vivit():
    mesh = device_mesh(2)
    shapes = eqx.filter_eval_shape(
        nn.ViViT,
        5,
        (2, 4, 4),
        16,
        1,
        2,
        32,
        4,
        16,
        attention_type="factorized_encoder",
        num_temporal_layers=1,
        key=jax.random.key(0),
    )
    expected = {**_under("encoder.blocks[0]", _BLOCK), **_under("temporal_encoder.blocks[0]", _BLOCK)}
    assert _non_replicated(parameter_shardings(shapes, mesh, "megatron")[0]) == expected


def test_megatron_specs_on_mixer():
    mesh = device_mesh(2)
    shapes = eqx.filter_eval_shape(nn.MlpMixer, 5, 4, 16, 2, 8, 32, 16, key=jax.random.key(0))
    mlp = {k.removeprefix("mlp."): v for k, v in _BLOCK.items() if k.startswith("mlp.")}
    expected = {
        f"blocks[{i}].{mixing}.{k}": v
        for i in range(2)
        for mixing in ("token_mixing", "channel_mixing")
        for k, v in mlp.items()
    }
    assert _non_replicated(parameter_shardings(shapes, mesh, "megatron")[0]) == expected


def test_megatron_specs_on_encoder_decoder():
    mesh = device_mesh(2)
    shapes = eqx.filter_eval_shape(nn.TransformerEncoderDecoder, 11, 16, 1, 2, 32, 8, key=jax.random.key(0))
    decoder_block = {}
    for k, v in _BLOCK.items():
        if k.startswith("attention."):
            decoder_block["self_" + k] = v
            decoder_block["cross_" + k] = v
        else:
            decoder_block[k] = v
    expected = {**_under("encoder.blocks[0]", _BLOCK), **_under("decoder.blocks[0]", decoder_block)}
    assert _non_replicated(parameter_shardings(shapes, mesh, "megatron")[0]) == expected


def test_megatron_then_fsdp_combines_both():
    mesh = device_mesh(2)
    shapes = eqx.filter_eval_shape(_vit, jax.random.key(0), num_layers=1)
    rules = [*MEGATRON_RULES, (".*", "fsdp")]
    shardings, report = parameter_shardings(shapes, mesh, rules, fsdp_min_size=1024)
    specs = _specs(shardings)
    assert specs["encoder.blocks[0].mlp.dense1.weight"] == P("model", None)
    # Not matched by a Megatron rule: FSDP over the 4 "data" devices.
    assert specs["embedding.weight"] == P("data", None, None, None)
    assert specs["pos_embedding.weight"] == P(None, "data")
    assert "encoder.blocks[0].attention.out.bias" in report


# ------------------------------------------------------- sharded == replicated numerics


def _loss(params, static, images, labels):
    model = eqx.combine(params, static)
    logits = jax.vmap(model, axis_name="batch")(images)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


@functools.cache
def _reference(name: str):
    """A model, a batch, and its replicated loss and gradient (computed once per model)."""
    keys = jax.random.split(jax.random.key(0), 3)
    if name == "vit":
        model = _vit(keys[0], hidden_size=32, mlp_dim=64, num_layers=1, classifier="map")
    else:
        model = _vit(keys[0], hidden_size=32, mlp_dim=64, num_layers=2, scan_layers=True)
    images = jax.random.normal(keys[1], (8, 16, 16, 3))
    labels = jax.random.randint(keys[2], (8,), 0, 5)
    params, static = partition_trainable(model)
    step = _jit(jax.value_and_grad(lambda p, x, y: _loss(p, static, x, y)))
    return params, static, images, labels, step(params, images, labels)


@pytest.mark.parametrize(
    "name, model_axis_size, sharding",
    [
        ("vit", 1, "fsdp"),
        ("vit", 2, "megatron"),
        ("vit_scan", 2, [*MEGATRON_RULES, (".*", "fsdp")]),
    ],
    ids=["fsdp", "megatron", "scanned-megatron-fsdp"],
)
def test_sharded_forward_and_gradient_equal_replicated(name, model_axis_size, sharding):
    params, static, images, labels, (loss, grads) = _reference(name)
    mesh = device_mesh(model_axis_size)
    shardings, _ = parameter_shardings(params, mesh, sharding, fsdp_min_size=1024)
    assert _non_replicated(shardings)  # Something is sharded.
    sharded = place(params, shardings)
    for x, s in zip(jax.tree.leaves(sharded), jax.tree.leaves(shardings)):
        assert x.addressable_shards[0].data.size == x.size // math.prod(
            mesh.shape[a] for a in jax.tree.leaves(tuple(s.spec))
        )
    batch = NamedSharding(mesh, P("data"))
    step = _jit(
        jax.value_and_grad(lambda p, x, y: _loss(p, static, x, y)),
        in_shardings=(shardings, batch, batch),
        out_shardings=(None, shardings),
    )
    loss_s, grads_s = step(sharded, images, labels)
    np.testing.assert_allclose(loss_s, loss, rtol=1e-5)
    # Sharded reductions sum in another order: rounding errors scale with the gradients'
    # magnitude (and leave mathematically zero gradients, e.g. of biases feeding a
    # LayerNorm, at ~1e-9 noise).
    atol = 1e-6 * max(float(np.abs(g).max()) for g in jax.tree.leaves(grads))
    for g_s, g in zip(jax.tree.leaves(grads_s), jax.tree.leaves(grads)):
        np.testing.assert_allclose(g_s, g, rtol=1e-5, atol=atol)


# ----------------------------------------------------------------------------- optimizers


def _labels(params):
    return jax.tree.map(lambda x: "matrix" if x.ndim > 1 else "vector", params)


def _decay_mask(params):
    return jax.tree.map(lambda x: x.ndim > 1, params)


_OPTIMIZERS = {
    "adam": lambda: optax.adam(1e-3),
    "adamw": lambda: optax.adamw(1e-3, weight_decay=0.1, mask=_decay_mask),
    "chain": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)),
    "multi_transform": lambda: optax.multi_transform(
        {"matrix": optax.adamw(1e-3), "vector": optax.sgd(1e-2, momentum=0.9)}, _labels
    ),
    "masked": lambda: optax.masked(optax.adam(1e-3), _decay_mask),
}


@pytest.mark.parametrize("name", sorted(_OPTIMIZERS))
def test_opt_state_shardings_follow_the_parameters(name):
    mesh = device_mesh(2)
    optimizer = _OPTIMIZERS[name]()
    # Every array of a ViT is a parameter (`partition_trainable` needs real arrays).
    params = eqx.filter(eqx.filter_eval_shape(_vit, jax.random.key(0), num_layers=1), _is_array)
    rules = [*MEGATRON_RULES, (".*", "fsdp")]
    param_sh, _ = parameter_shardings(params, mesh, rules, fsdp_min_size=1024)
    opt_shapes = jax.eval_shape(optimizer.init, params)
    opt_sh = opt_state_shardings(optimizer, opt_shapes, param_sh, mesh)
    is_masked = lambda x: isinstance(x, optax.MaskedNode)
    assert jax.tree.structure(opt_sh, is_leaf=is_masked) == jax.tree.structure(
        eqx.filter(opt_shapes, _is_array), is_leaf=is_masked
    )
    param_specs = _specs(param_sh)
    num_following = 0
    for path, spec in _specs(opt_sh).items():
        # `[0].mu.encoder...` follows `encoder...`; anything else (counts) is replicated.
        owner = [p for p in param_specs if path.endswith("." + p)]
        if owner:
            assert spec == param_specs[max(owner, key=len)], path
            num_following += spec != P()
        else:
            assert spec == P(), path
    assert num_following >= 8  # The sharded moments of the Megatron leaves at least.


def test_create_sharded_optimizer_state_follows_sharded_parameters(getkey):
    mesh = device_mesh(2)
    optimizer = _OPTIMIZERS["multi_transform"]()
    build = lambda k: _vit(k, num_layers=1)
    model = create_sharded(build, getkey(), mesh=mesh, sharding="megatron")
    params = partition_trainable(model)[0]
    param_sh, _ = parameter_shardings(params, mesh, "megatron")
    opt_sh = opt_state_shardings(optimizer, jax.eval_shape(optimizer.init, params), param_sh, mesh)
    opt_state = create_sharded(optimizer.init, params, mesh=mesh, sharding=opt_sh)
    mu = opt_state.inner_states["matrix"].inner_state[0].mu
    assert mu.encoder.blocks[0].mlp.dense2.weight.sharding.spec == P(None, "model")
    assert isinstance(mu.encoder.blocks[0].mlp.dense1.bias, optax.MaskedNode)
    trace = opt_state.inner_states["vector"].inner_state[0].trace
    assert trace.encoder.blocks[0].attention.query.bias.sharding.spec == P("model")
    expected = optimizer.init(jax.tree.map(np.asarray, params))
    for a, b in zip(jax.tree.leaves(opt_state), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(a, b)


class _BatchNormNet(eqx.Module):
    linear: eqx.nn.Linear
    norm: eqx.nn.BatchNorm

    def __init__(self, *, key):
        self.linear = eqx.nn.Linear(64, 128, key=key)
        self.norm = eqx.nn.BatchNorm(128, axis_name="batch", mode="batch")

    def __call__(self, x, state):
        return self.norm(self.linear(x), state)


def test_train_state_shardings_and_init_placed_train_state(getkey):
    mesh = device_mesh()
    model, model_state = eqx.nn.make_with_state(_BatchNormNet)(key=getkey())
    optimizer = optax.adamw(1e-3)
    key = getkey()
    state = init_train_state(model, optimizer, key=key, model_state=model_state)
    shardings, report = train_state_shardings(state, optimizer, mesh, "fsdp", fsdp_min_size=1024)
    assert report == {"linear.bias": (128,), "norm.weight": (128,), "norm.bias": (128,)}
    # The same from the state's shapes alone (as before creating it sharded).
    shapes = eqx.filter_eval_shape(lambda s: s, state)
    assert train_state_shardings(shapes, optimizer, mesh, "fsdp", fsdp_min_size=1024) == (shardings, report)
    placed, placed_report = init_placed_train_state(
        model,
        optimizer,
        key=key,
        model_state=model_state,
        mesh=mesh,
        sharding="fsdp",
        fsdp_min_size=1024,
    )
    assert placed_report == report
    assert isinstance(placed, TrainState)
    assert jax.tree.map(lambda x: x.sharding, eqx.filter(placed, eqx.is_array)) == shardings
    fsdp = P("data", None)  # [128, 64]: the larger dimension.
    assert placed.model.linear.weight.sharding.spec == fsdp
    assert placed.opt_state[0].mu.linear.weight.sharding.spec == fsdp
    assert placed.opt_state[0].nu.linear.weight.sharding.spec == fsdp
    replicated = [
        placed.opt_state[0].count,
        placed.step,
        placed.key,
        *jax.tree.leaves(placed.model_state),
        # Its weight, bias and the initial statistics held by its `StateIndex`es.
        *jax.tree.leaves(eqx.filter(placed.model.norm, eqx.is_array)),
    ]
    assert all(x.sharding.spec == P() and x.sharding.mesh == mesh for x in replicated)
    assert jax.dtypes.issubdtype(placed.key.dtype, jax.dtypes.prng_key)
    arrays = lambda tree: jax.tree.leaves(eqx.filter(tree, eqx.is_array))
    for a, b in zip(arrays(placed), arrays(state)):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- creation


def test_create_sharded_builds_the_same_model_on_its_shardings(getkey):
    mesh = device_mesh(2)
    key = getkey()
    build = lambda k: _vit(k, num_layers=1, scan_layers=True)
    rules = [*MEGATRON_RULES, (".*", "fsdp")]
    model = create_sharded(build, key, mesh=mesh, sharding=rules, fsdp_min_size=1024)
    assert model.encoder.blocks.mlp.dense1.weight.sharding.spec == P(None, "model", None)
    assert model.encoder.blocks.attention.out.weight.sharding.spec == P(None, None, "model")
    assert model.embedding.weight.sharding.spec == P("data", None, None, None)
    assert model.head.weight.sharding.spec == P()
    assert model.encoder.scan_layers and model.image_size == (16, 16)  # Static fields back.
    reference = build(key)
    arrays = lambda tree: jax.tree.leaves(eqx.filter(tree, eqx.is_array))
    for a, b in zip(arrays(model), arrays(reference)):
        assert a.sharding.mesh == mesh
        # The same random bits; jitted scaling may round differently in the last ulp.
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- placement


@pytest.mark.parametrize("size", [8, 4096])
def test_place_never_aliases_the_callers_buffers(size):
    mesh = device_mesh()
    x = jnp.arange(float(size))
    n = np.arange(float(size), dtype=np.float32)
    placed = place({"x": x, "n": n, "name": "static"}, NamedSharding(mesh, P()))
    assert placed["name"] == "static"
    for a, ptr in ((placed["x"], x.unsafe_buffer_pointer()), (placed["n"], n.ctypes.data)):
        assert ptr not in {s.data.unsafe_buffer_pointer() for s in a.addressable_shards}
    # Donating the placed copies (an in-place reversal) leaves the caller's arrays intact.
    flip = _jit(lambda t: jax.tree.map(lambda a: jnp.flip(a) * 2, t), donate_argnums=0)
    out = flip({"x": placed["x"], "n": placed["n"]})
    expected = np.arange(float(size))
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(n, expected)
    for a in jax.tree.leaves(out):
        for shard in a.addressable_shards:
            np.testing.assert_array_equal(shard.data, expected[::-1] * 2)


def test_place_rejects_mismatched_shardings():
    mesh = device_mesh()
    tree = {"a": jnp.ones(4), "b": jnp.ones(4)}
    with pytest.raises(ValueError, match="`shardings` must be a Sharding or a pytree shaped like"):
        place(tree, {"a": NamedSharding(mesh, P())})
    with pytest.raises(ValueError, match=r"must hold a Sharding for every array.*Received: 'x'"):
        place(tree, {"a": NamedSharding(mesh, P()), "b": "x"})


# ----------------------------------------------------------------------------- errors


def _tree():
    return {"w": jax.ShapeDtypeStruct((6, 8), jnp.float32)}


def test_patterns_match_whole_paths():
    mesh = device_mesh(2)
    # `re.fullmatch`: "w" does not match the path "['w']", which stays replicated.
    assert parameter_shardings(_tree(), mesh, [("w", P("model"))])[0]["w"].spec == P()
    rules = [(r"\['w'\]", P("model"))]
    assert parameter_shardings(_tree(), mesh, rules)[0]["w"].spec == P(None, "model")
    # An entry may name several axes: 8 columns over 4 x 2 devices.
    rules = [(".*", P(None, ("data", "model")))]
    assert parameter_shardings(_tree(), mesh, rules)[0]["w"].spec == P(None, ("data", "model"))


@pytest.mark.parametrize(
    "spec, match",
    [
        (
            P("expert", None),
            r"rule '\.\*' gives parameter `\['w'\]` \(shape \(6, 8\)\) the spec "
            r"P\('expert', None\), but the mesh has no axis 'expert' "
            r"\(mesh shape \{'data': 4, 'model': 2\}\)",
        ),
        (
            P("data", None),
            r"`\['w'\]` \(shape \(6, 8\)\) the spec P\('data', None\), but dimension "
            r"6 is not divisible by the size of 'data' \(=4\) "
            r"\(mesh shape \{'data': 4, 'model': 2\}\)",
        ),
        (
            P(("data", "model"), None),
            r"dimension 6 is not divisible by the size of \('data', 'model'\) \(=8\)",
        ),
        (P(None, None, "model"), r"\(shape \(6, 8\)\).*but it has 2 dimensions, fewer than the spec"),
        (P("model", "model"), r"P\('model', 'model'\), but axis 'model' is used twice"),
    ],
    ids=["unknown-axis", "indivisible", "indivisible-two-axes", "too-long", "twice"],
)
def test_bad_specs_raise_naming_path_shape_spec_and_mesh(spec, match):
    with pytest.raises(ValueError, match=match):
        parameter_shardings(_tree(), device_mesh(2), [(".*", spec)])


@pytest.mark.parametrize(
    "sharding, match",
    [
        ("zero3", r"`sharding` \(='zero3'\) must be one of \['fsdp', 'megatron', 'replicated'\]"),
        ([(".*",)], r"must be a pair \(pattern: str, spec.*Received: \('\.\*',\)"),
        ([(0, "fsdp")], r"must be a pair \(pattern: str, spec.*Received: \(0, 'fsdp'\)"),
        ([(".*", "zero3")], r"spec of `sharding` rule '\.\*' must be a PartitionSpec.*Received: 'zero3'"),
        ([("(", "fsdp")], r"pattern of `sharding` rule '\(' is not a valid regular expression"),
    ],
)
def test_bad_sharding_arguments_raise(sharding, match):
    with pytest.raises(ValueError, match=match):
        parameter_shardings(_tree(), device_mesh(), sharding)


def test_fsdp_needs_a_data_axis_and_a_valid_min_size():
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("batch",))
    match = r"the mesh has no axis 'data' \(mesh shape \{'batch': 8\}\)"
    with pytest.raises(ValueError, match=match):
        parameter_shardings(_tree(), mesh, "fsdp")
    with pytest.raises(ValueError, match=r"`fsdp_min_size` \(=-1\) must be a non-negative integer"):
        parameter_shardings(_tree(), device_mesh(), "fsdp", fsdp_min_size=-1)


def test_replicated_is_the_default_for_every_leaf():
    mesh = device_mesh(2)
    shapes = eqx.filter_eval_shape(_vit, jax.random.key(0), num_layers=1)
    shardings, report = parameter_shardings(shapes, mesh, "replicated")
    assert report == {} and _non_replicated(shardings) == {}
    assert len(jax.tree.leaves(shardings)) == len(jax.tree.leaves(eqx.filter(shapes, _is_array)))


# ----------------------------------------------------------------------------- hosts

_WORKER = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax
process_id, port = int(sys.argv[1]), sys.argv[2]
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from scenic_eqx.loops._partitioning import device_mesh, parameter_shardings
from scenic_eqx.loops._placement import create_sharded, place

mesh = device_mesh(2)  # data 2 x model 2: one row per host.
assert [d.process_index for d in mesh.devices[process_id]] == [process_id] * 2
tree = {
    "w": np.arange(8 * 16, dtype=np.float32).reshape(8, 16),
    "key": jax.random.key(3),
}
rules = [(r"\\['w'\\]", P("data", "model"))]
shardings, _ = parameter_shardings(tree, mesh, rules)
placed = place(tree, shardings)
for shard in placed["w"].addressable_shards:  # This host's quarter-blocks of `w`.
    assert shard.data.shape == (4, 8)
    np.testing.assert_array_equal(shard.data, tree["w"][shard.index])
assert jax.dtypes.issubdtype(placed["key"].dtype, jax.dtypes.prng_key)
total = jax.jit(lambda t: t["w"].sum(), out_shardings=NamedSharding(mesh, P()))(placed)
assert float(total.addressable_data(0)) == float(tree["w"].sum())
ones = create_sharded(lambda: {"w": jax.numpy.ones((8, 16))}, mesh=mesh, sharding=rules)
assert ones["w"].sharding.spec == P("data", "model") and not ones["w"].is_fully_addressable
print("worker ok")
"""


def test_place_and_create_sharded_across_two_processes(free_port):
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(i), port],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0 and "worker ok" in log, log[-3000:]
