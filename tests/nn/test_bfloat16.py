"""Every registered model, and the layers with float32 islands, in bfloat16 compute.

A mixed-precision step casts the float32 master parameters and the floating-point
inputs to bfloat16, runs the model and casts its outputs back to float32 for the loss;
the gradients flow back through the casts to the float32 parameters, and the model
state (BatchNorm's running statistics) is never cast. Each distinct tiny build of
test_zoo.py's `TINY` must then run in training mode with finite bfloat16 outputs (its
intermediates bfloat16 too: nothing silently computes the model in float32), close to
its float32 outputs, with float32 state close to the float32 run's, and float32 finite
gradients.

How close: bfloat16 keeps 8 significant bits, so each rounding moves a value by up to
2**-9 (0.2%) of itself, and a network amplifies such perturbations by its own
sensitivity. Tiny random convnets are very sensitive: rounding the parameters and the
input of the tiny ResNet-26 to bfloat16 and computing in float32 already moves its
logits by 3-10%, the BatchNorm of its last stage taking statistics over 2 images of
2x2 pixels. So the tolerance is relative to that floor, measured per model: computing
in bfloat16 also rounds each layer's output, perturbations of the same size again, so
its error stays within a small factor of the floor (measured: up to 2.3x). The bound is
3x the floor, and never below 5e-2 (the error of some 25 roundings).
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_zoo import NUM_CLASSES, TINY, _distinct_tiny_models, _example_batch

from scenic_eqx.nn import GroupNorm, StdConv2d, StochasticDepth, TransformerEncoderDecoder, _registry

BF16, F32 = jnp.bfloat16, jnp.float32
# Outputs that stay float32 in bfloat16 compute, by family: DETR's boxes (see `DETR`).
FLOAT32_OUTPUTS: dict[str, tuple[str, ...]] = {"detr": ("pred_boxes", "aux_pred_boxes")}


def _is_state_index(x) -> bool:
    return isinstance(x, eqx.nn.StateIndex)


def _cast(tree, dtype):
    """Every floating-point array of `tree` in `dtype`; a `StateIndex` (initial model
    state) is left alone, as a mixed-precision step leaves the state."""
    cast = lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x
    return jax.tree.map(cast, tree, is_leaf=_is_state_index)


def _relative_error(actual, expected) -> float:
    """`max|actual - expected| / max|expected|`, in float32."""
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def _tolerance(floor: float) -> float:
    return max(5e-2, 3 * floor)


def _floating_leaves(tree) -> dict[str, jax.Array]:
    return {
        jax.tree_util.keystr(path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        if jnp.issubdtype(leaf.dtype, jnp.floating)
    }


def _check_bfloat16_training_step(model, family: str, key=None):
    """One training-mode forward and backward pass of a batch of 2 in bfloat16 compute,
    against float32 (see the module docstring); `key` drives dropout, if any."""
    stateful = any(map(_is_state_index, jax.tree.leaves(model, is_leaf=_is_state_index)))
    state = eqx.nn.State(model) if stateful else None
    params, static = eqx.partition(model, eqx.is_inexact_array, is_leaf=_is_state_index)
    x = _example_batch(family)  # CLIP's: images and token ids (which stay int32)
    keys = None if key is None else jax.random.split(key, 2)

    def forward(params, x, state, method="__call__"):
        fn = getattr(eqx.combine(params, static), method)

        def apply(x, key):
            kwargs = {} if key is None else {"key": key}
            return (fn(x, **kwargs), None) if state is None else fn(x, state, **kwargs)

        return jax.vmap(apply, axis_name="batch", out_axes=(0, None))(x, keys)

    # LLVM optimisation off: most of the compile time, and numerics do not depend on it.
    compile_fast = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

    @compile_fast
    def bfloat16_step(params, x, state):
        def loss(params):
            out, new_state = forward(_cast(params, BF16), _cast(x, BF16), state)
            weighted = [
                jnp.sum(leaf * jax.random.normal(jax.random.key(i), leaf.shape))
                for i, leaf in enumerate(jax.tree.leaves(_cast(out, F32)), 2)
            ]
            return sum(weighted), (out, new_state)

        return jax.value_and_grad(loss, has_aux=True)(params)

    forward32 = compile_fast(forward)
    out32, state32 = forward32(params, x, state)
    # The model's floor: float32 compute on parameters and input rounded to bfloat16.
    rounded = _cast(_cast(params, BF16), F32), _cast(_cast(x, BF16), F32)
    out_floor, state_floor = forward32(*rounded, state)
    (_, (out16, state16)), grads = bfloat16_step(params, x, state)

    outputs, expected, floor = map(_floating_leaves, (out16, out32, out_floor))
    assert outputs.keys() == expected.keys()
    float32_outputs = {f"[{k!r}]" for k in FLOAT32_OUTPUTS.get(family, ())}
    for path, leaf in outputs.items():
        assert leaf.dtype == (F32 if path in float32_outputs else BF16), path
        assert jnp.all(jnp.isfinite(leaf)), path
        error, floor_error = (_relative_error(y, expected[path]) for y in (leaf, floor[path]))
        assert error <= _tolerance(floor_error), (path, error, floor_error)

    if stateful:
        # Same structure and dtypes as the float32 run's state: float32 statistics.
        assert jax.tree.structure(state16) == jax.tree.structure(state32)
        for a, b, floor in zip(*map(jax.tree.leaves, (state16, state32, state_floor))):
            assert a.dtype == b.dtype
            if jnp.issubdtype(a.dtype, jnp.floating):
                assert jnp.all(jnp.isfinite(a))
                assert _relative_error(a, b) <= _tolerance(_relative_error(floor, b))
            else:
                np.testing.assert_array_equal(a, b)  # Batch counters.

    grad_leaves = jax.tree.leaves(grads)
    assert len(grad_leaves) == len(jax.tree.leaves(params))
    assert all(g.dtype == F32 and jnp.all(jnp.isfinite(g)) for g in grad_leaves)

    # The named intermediates are bfloat16 too (traced only, not compiled).
    if hasattr(model, "features"):
        features, _ = eqx.filter_eval_shape(
            functools.partial(forward, method="features"), _cast(params, BF16),
            _cast(x, BF16), state,
        )  # fmt: skip
        dtypes = {path: leaf.dtype for path, leaf in _floating_leaves(features).items()}
        assert dtypes and all(d == BF16 for d in dtypes.values()), dtypes


@pytest.mark.parametrize("name, family", _distinct_tiny_models())
def test_tiny_model_runs_in_bfloat16_close_to_float32(name, family):
    model = _registry.create(name, num_classes=NUM_CLASSES, key=jax.random.key(0), **TINY[family])
    _check_bfloat16_training_step(model, family)


# Options the tiny builds leave at their defaults: attention pooling, fixed position
# embeddings, scanned layers, the factorised ViViT, and active dropout and stochastic
# depth (their draws are float32 in either precision, so both runs drop the same units).
OPTIONS = {
    "vit_map_sincos_scan": ("vit_b16", "vit", dict(
        classifier="map", posemb="sincos2d", scan_layers=True, gelu_approximate=True,
        dropout_rate=0.1, attention_dropout_rate=0.1, stochastic_depth=0.2)),
    "vivit_factorized": ("vivit_b16x2", "vivit", dict(
        attention_type="factorized_encoder", num_temporal_layers=1, classifier="gap",
        stochastic_depth=0.2)),
}  # fmt: skip


@pytest.mark.parametrize("name, family, options", OPTIONS.values(), ids=OPTIONS)
def test_model_options_run_in_bfloat16_close_to_float32(name, family, options):
    kwargs = {**TINY[family], **options}
    model = _registry.create(name, num_classes=NUM_CLASSES, key=jax.random.key(0), **kwargs)
    _check_bfloat16_training_step(model, family, key=jax.random.key(2))


def test_sequence_transformer_runs_in_bfloat16():
    # Not in the registry (token inputs); its embeddings and position tables follow the
    # parameters' dtype.
    model = TransformerEncoderDecoder(
        11, hidden_size=8, num_layers=1, num_heads=2, mlp_dim=16, max_len=8,
        key=jax.random.key(0),
    )  # fmt: skip
    inputs = {"source": jnp.array([[3, 4, 5, 0], [6, 2, 0, 0]]), "target_in": jnp.array(
        [[1, 7, 8], [1, 9, 10]])}  # fmt: skip
    params, static = eqx.partition(model, eqx.is_inexact_array)
    forward = jax.jit(
        lambda params, inputs: jax.vmap(eqx.combine(params, static))(inputs),
        compiler_options={"xla_backend_optimization_level": 0},
    )
    logits16, logits32 = forward(_cast(params, BF16), inputs), forward(params, inputs)
    assert logits16.dtype == BF16 and jnp.all(jnp.isfinite(logits16))
    rounded = forward(_cast(_cast(params, BF16), F32), inputs)
    assert _relative_error(logits16, logits32) <= _tolerance(_relative_error(rounded, logits32))


@pytest.mark.parametrize("layer", ["group_norm", "std_conv"])
def test_normalising_layers_return_bfloat16_from_float32_parameters(layer, getkey):
    # Statistics in float32 inside; the output in the input's dtype even when the
    # parameters are float32 (not promoted), close to the float32 computation.
    module = GroupNorm(2, 4) if layer == "group_norm" else StdConv2d(4, 3, 3, key=getkey())
    x = jax.random.normal(getkey(), (4, 6, 6)).astype(BF16)
    y, y32 = (eqx.filter_jit(module)(x.astype(dtype)) for dtype in (BF16, F32))
    assert y.dtype == BF16
    # The rounding of the output, plus that of the standardised kernel for StdConv2d.
    np.testing.assert_allclose(y.astype(F32), y32, atol=2**-7 * float(jnp.max(jnp.abs(y32))))


def test_stochastic_depth_draws_and_scales_bfloat16_in_float32(getkey):
    layer = StochasticDepth(0.1)
    keys = jax.random.split(getkey(), 2000)
    apply = jax.jit(jax.vmap(lambda x, k: layer(x, key=k)))
    x = jnp.full((2000, 2), 3.0)
    y, y32 = apply(x.astype(BF16), keys), apply(x, keys)
    assert y.dtype == BF16
    # The same examples are dropped as in float32: the draw is float32 either way.
    np.testing.assert_array_equal(y == 0, y32 == 0)
    # Kept ones are scaled by 1/0.9 in float32, then rounded once (not 3/bf16(0.9)).
    kept = y[y != 0].astype(F32)
    np.testing.assert_array_equal(kept, jnp.asarray(3.0 / 0.9, BF16).astype(F32))
