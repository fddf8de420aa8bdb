"""Every registered model, built tiny: finite outputs, a gradient on every parameter, one
trace per input shape.

A model registered without an entry in `TINY` fails `test_every_model_has_a_tiny_variant`,
so no model enters the zoo untested. Names whose tiny builds coincide (`vit_s16` and
`vit_b16` once both are shrunk) are tested once, as one parameter.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from scenic_eqx.nn import _registry, list_models

# Constructor overrides that make each family tiny, by name prefix (the longest wins).
_TINY_RESNET = {"depth": 26, "width": 4, "stem": "cifar", "zero_init_residual": False}
_TINY_TRANSFORMER = {"hidden_size": 16, "num_layers": 2, "num_heads": 2, "mlp_dim": 32}
TINY: dict[str, dict] = {
    "fully_connected": {"input_shape": (16, 16, 3), "hidden_sizes": (8,)},
    "simple_cnn": {"in_channels": 3, "num_filters": (4, 8)},
    # Zero-initialised residual scales would leave the branch weights without a gradient
    # at initialisation: tested off. Depth 26 is the smallest bottleneck ResNet.
    "resnet": _TINY_RESNET,
    "resnet18": {**_TINY_RESNET, "depth": 18},
    "resnet34": {**_TINY_RESNET, "depth": 18},
    "bit": {"depth": 26, "width": 8, "num_groups": 2},
    "unet": {"base_features": 4, "num_levels": 2, "num_groups": 2},
    "detr": {"backbone_depth": 18, "backbone_width": 4, "backbone_stem": "cifar", "dim": 16,
             "num_heads": 2, "mlp_dim": 32, "num_encoder_layers": 1, "num_decoder_layers": 2,
             "num_queries": 4, "dropout_rate": 0.0},
    "vit": {**_TINY_TRANSFORMER, "image_size": 16, "patch_size": 4},
    "mixer": {"hidden_size": 16, "num_layers": 2, "tokens_mlp_dim": 8, "channels_mlp_dim": 32,
              "image_size": 16, "patch_size": 4},
    "vivit": {**_TINY_TRANSFORMER, "image_size": 16, "num_frames": 4, "tubelet_size": (2, 4, 4)},
    "clip": {"embed_dim": 8, "image_size": 16, "patch_size": 4, "vision_width": 16, "vision_layers": 2,
             "vision_heads": 2, "vocab_size": 32, "context_length": 8, "text_width": 16, "text_layers": 2,
             "text_heads": 2},
}  # fmt: skip
# Parameters that get no gradient at initialisation by design, by path prefix. DETR's
# decoder input is zeros (Carion et al. 2020): its first block's self-attention sees one
# constant token whatever its weights, and the block's norms see zeros.
NO_GRADIENT_AT_INIT: dict[str, tuple[str, ...]] = {
    "detr": tuple(f".decoder.blocks[0].{m}." for m in ("norm1", "self_attention", "norm2")),
}
# One example's input shape, where it is not a 16x16 RGB image.
INPUT_SHAPES: dict[str, tuple[int, ...]] = {"vivit": (4, 16, 16, 3)}
NUM_CLASSES = 3


def _example_batch(family: str, seed: int = 1):
    """Two examples' inputs; CLIP's are image-text pairs (8 token ids of 32)."""
    x = jax.random.normal(jax.random.key(seed), (2, *INPUT_SHAPES.get(family, (16, 16, 3))))
    if family == "clip":
        return {"image": x, "text": jax.random.randint(jax.random.key(seed + 1), (2, 8), 0, 32)}
    return x


def _library_models() -> list[str]:
    """The library's own registered models (projects register theirs in the same registry)."""
    return [name for name in list_models() if _registry._lookup(name)[0].__module__.startswith("scenic_eqx.")]


def _family(name: str) -> str | None:
    matches = [prefix for prefix in TINY if name.startswith(prefix)]
    return max(matches, key=len) if matches else None


def _distinct_tiny_models():
    """One parameter per distinct tiny build: (first name, family), with the names it covers."""
    groups: dict[tuple, tuple[str, list[str]]] = {}
    for name in _library_models():
        family = _family(name)
        if family is None:
            continue  # Reported by test_every_model_has_a_tiny_variant.
        constructor, variant = _registry._lookup(name)
        build = (constructor, repr(sorted({**variant, **TINY[family]}.items())))
        groups.setdefault(build, (family, []))[1].append(name)
    return [
        pytest.param(names[0], family, id="+".join(names) if len(names) < 3 else
                     f"{names[0]}+{len(names) - 1}_more")
        for family, names in groups.values()
    ]  # fmt: skip


def test_every_model_has_a_tiny_variant():
    missing = [name for name in _library_models() if _family(name) is None]
    assert not missing, f"add tiny constructor overrides to TINY in test_zoo.py for {missing}"


def test_every_tiny_entry_is_used():
    unused = [prefix for prefix in TINY if not any(_family(n) == prefix for n in _library_models())]
    assert not unused, f"TINY entries that match no registered model: {unused}"


def _is_state_index(x) -> bool:
    return isinstance(x, eqx.nn.StateIndex)


@pytest.mark.parametrize("name, family", _distinct_tiny_models())
def test_tiny_model_is_finite_and_every_parameter_gets_a_gradient(name, family):
    model = _registry.create(name, num_classes=NUM_CLASSES, key=jax.random.key(0), **TINY[family])
    stateful = any(map(_is_state_index, jax.tree.leaves(model, is_leaf=_is_state_index)))
    state = eqx.nn.State(model) if stateful else None
    # A StateIndex holds the initial state (BatchNorm's running statistics): not a parameter.
    params, static = eqx.partition(model, eqx.is_inexact_array, is_leaf=_is_state_index)
    x = _example_batch(family)

    # LLVM optimisation off: it is most of the compile time of these small programs on CPU,
    # and these checks do not depend on it.
    @functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
    @eqx.debug.assert_max_traces(max_traces=1)
    def loss_and_grads(params, x, state):
        def loss(params):
            model = eqx.combine(params, static)
            if state is None:
                out = jax.vmap(model, axis_name="batch")(x)
            else:
                batched = jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
                out, _ = batched(x, state)
            # Random weights: no symmetry can cancel a parameter's gradient.
            weighted = [
                jnp.sum(leaf * jax.random.normal(jax.random.key(i), leaf.shape))
                for i, leaf in enumerate(jax.tree.leaves(out), 2)
            ]
            return sum(weighted), out

        return jax.value_and_grad(loss, has_aux=True)(params)

    (_, out), grads = loss_and_grads(params, x, state)
    # Detectors return a dict of predictions; their class logits add "no object". CLIP
    # has no classes: its embeddings have `embed_dim` entries.
    if family == "clip":
        assert out["image_embedding"].shape[-1] == out["text_embedding"].shape[-1] == 8
    else:
        logits = out["pred_logits"] if isinstance(out, dict) else out
        assert logits.shape[-1] == NUM_CLASSES + (family == "detr")
    assert all(leaf.shape[0] == 2 and jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(out))
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    assert leaves
    exempt = NO_GRADIENT_AT_INIT.get(family, ())
    no_gradient = [
        name
        for name in (jax.tree_util.keystr(p) for p, g in leaves if not jnp.any(g != 0))
        if not name.startswith(exempt)
    ]
    assert not no_gradient, f"parameters without a gradient: {no_gradient}"
    assert all(jnp.all(jnp.isfinite(g)) for _, g in leaves)
    # A second batch of the same shape reuses the first trace (assert_max_traces).
    loss_and_grads(params, _example_batch(family, seed=3), state)
