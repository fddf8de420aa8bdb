"""Every model family refuses a wrong input at trace time: rank, dtype, channels, size.

The suite checks every jaxtyping annotation, which catches a wrong rank or dtype before
the models' own checks run; users run without those checks, so these tests switch them
off to see what a user sees. Models are built abstractly (`eqx.filter_eval_shape`) and
traced, never compiled.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from test_zoo import INPUT_SHAPES, NUM_CLASSES, TINY, _family

from scenic_eqx import nn
from scenic_eqx.nn import _registry
from scenic_eqx.nn._input_checks import check_flat_input, check_image, check_input

# One model of each family (the first registered name of each).
FAMILIES = {_family(name): name for name in reversed(nn.list_models())}


def _abstract(family):
    constructor, variant = _registry._lookup(FAMILIES[family])
    kwargs = {**variant, **TINY[family], "num_classes": NUM_CLASSES}
    if family == "fully_connected":  # Its constructor needs a concrete `input_shape`.
        return constructor(**kwargs, key=jax.random.key(0))
    return eqx.filter_eval_shape(constructor, **kwargs, key=jax.random.key(0))


def _trace(model, x):
    """The output shapes of `model(x)` for one example `x`, batched as the loops do."""
    is_index = lambda leaf: isinstance(leaf, eqx.nn.StateIndex)  # noqa: E731
    has_state = any(is_index(leaf) for leaf in jax.tree.leaves(model, is_leaf=is_index))
    batch = jax.ShapeDtypeStruct((1, *x.shape), x.dtype)

    def forward(model, batch):
        if has_state:
            apply = lambda x, state: model(x, state)[0]  # noqa: E731
            return jax.vmap(apply, (0, None), axis_name="batch")(batch, eqx.nn.State(model))
        return jax.vmap(model)(batch)

    return eqx.filter_eval_shape(forward, model, batch)


# CLIP takes an image-text pair: tests/nn/test_clip.py checks its inputs.
@pytest.mark.parametrize("family", sorted(set(TINY) - {"clip"}))
def test_every_family_refuses_a_wrong_input(family, without_annotation_checks):
    model, shape = _abstract(family), INPUT_SHAPES.get(family, (16, 16, 3))
    name = type(model).__name__
    _trace(model, jax.ShapeDtypeStruct(shape, jnp.float32))  # the right input passes
    prefix = rf"`x` \(the input of {name}\) must"
    one_channel = jax.ShapeDtypeStruct((*shape[:-1], 1), jnp.float32)
    if family == "fully_connected":
        channels = rf"{prefix} hold 768 values, .* Received: shape \(16, 16, 1\) \(256 values\)\."
    else:
        channels = (
            rf"{prefix} have size 3 on its `channels` axis \(axis {len(shape) - 1} of .*\), from "
            rf"`in_channels` \(=3\)\. Received: shape \({', '.join(map(str, one_channel.shape))}\)\."
        )
    with pytest.raises(ValueError, match=channels):
        _trace(model, one_channel)
    for dtype in (jnp.uint8, jnp.int32):
        with pytest.raises(
            TypeError, match=rf"{prefix} be a floating-point array .* Received: dtype {jnp.dtype(dtype)}\."
        ):
            _trace(model, jax.ShapeDtypeStruct(shape, dtype))
    rank = r"must have rank|must be one clip"
    with pytest.raises(
        ValueError, match=rf"`x` \(the input of {name}\) ({rank}).* Received: shape \({shape[1]}, "
    ):
        _trace(model, jax.ShapeDtypeStruct(shape[1:], jnp.float32))
    if family != "vivit":  # ViViT takes a video's views: a leading axis is allowed.
        with pytest.raises(
            ValueError, match=r"It takes one example: batch it with `jax.vmap`. Received: shape \(2, "
        ):
            _trace(model, jax.ShapeDtypeStruct((2, *shape), jnp.float32))


@pytest.mark.parametrize("family", ["vit", "mixer", "vivit"])
def test_fixed_size_models_name_the_size_they_were_built_for(family, without_annotation_checks):
    model, shape = _abstract(family), INPUT_SHAPES.get(family, (16, 16, 3))
    wider = jax.ShapeDtypeStruct((*shape[:-2], 8, 3), jnp.float32)
    with pytest.raises(ValueError, match=r"must have size 16 on its `width` axis .* Received: shape"):
        _trace(model, wider)


def test_a_one_channel_image_into_a_three_channel_patch_embedding(getkey):
    # The einsum over patches broadcast the channel axis: a grey image was accepted.
    embedding = nn.PatchEmbedding(3, 8, 4, key=getkey())
    match = (
        r"`x` \(the input of PatchEmbedding\) must have size 3 on its `channels` axis \(axis 2 "
        r"of \(height, width, channels\)\), from `in_channels` \(=3\). Received: shape \(8, 8, 1\)."
    )
    with pytest.raises(ValueError, match=match):
        embedding(jnp.ones((8, 8, 1)))
    tubelets = nn.TubeletEmbedding(3, 8, 2, key=getkey())
    with pytest.raises(ValueError, match=r"TubeletEmbedding\) must have size 3 on its `channels` axis"):
        tubelets(jnp.ones((2, 4, 4, 1)))


def test_check_input_messages():
    with pytest.raises(
        TypeError, match=r"`x` \(the input of M\) must be an array of shape \(a, b\). Received: list."
    ):
        check_input([1.0, 2.0], ("a", "b"), model="M")
    with pytest.raises(
        ValueError,
        match=r"`image` \(the input of M\) must have rank 2, shape \(a, b\). Received: shape \(3,\).",
    ):
        check_input(jnp.zeros(3), ("a", "b"), model="M", name="image")
    # bfloat16 and float16 are floating point.
    check_input(jnp.zeros((2, 3), jnp.bfloat16), ("a", "b"), model="M", sizes={"b": ("`b`", 3)})
    with pytest.raises(ValueError, match=r"from `num_frames` x `image_size` \(=2x4x4\)"):
        check_image(jnp.zeros((3, 4, 4, 1)), model="M", in_channels=1, image_size=(4, 4), num_frames=2)
    with pytest.raises(ValueError, match=r"must hold 12 values"):
        check_flat_input(jnp.zeros((2, 2, 2)), model="M", num_values=12)
