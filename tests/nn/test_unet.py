"""U-Net: shapes, structure, input-size and argument errors.

Gradients, finiteness and one-trace-per-shape are checked for every registered model
in test_zoo.py.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from scenic_eqx.nn import UNet, create, list_models


def _abstract(**kwargs):
    """The model as shapes only: no initialisation is computed or compiled."""
    return eqx.filter_eval_shape(UNet, **kwargs, key=jax.random.key(0))


def _output_shape(model, height, width):
    x = jax.ShapeDtypeStruct((height, width, 3), jnp.float32)
    return eqx.filter_eval_shape(lambda m, x: m(x), model, x).shape


@pytest.mark.parametrize("height, width", [(16, 16), (8, 24)])
def test_logits_have_the_input_size(height, width):
    model = _abstract(num_classes=5, base_features=4, num_levels=3, num_groups=2)
    assert _output_shape(model, height, width) == (height, width, 5)


def test_channels_double_per_level_and_the_decoder_reads_the_skip():
    model = _abstract(num_classes=5, in_channels=1, base_features=4, num_levels=3, num_groups=2)
    assert [unit.conv2.weight.shape[0] for unit in model.encoder] == [4, 8, 16]
    assert model.encoder[0].conv1.weight.shape == (4, 1, 3, 3)
    # Deepest first: upsampling halves the channels, concatenation with the skip doubles them.
    assert [up.weight.shape[:2] for up in model.upsample] == [(8, 16), (4, 8)]
    assert [unit.conv1.weight.shape[:2] for unit in model.decoder] == [(8, 16), (4, 8)]
    assert model.head.weight.shape == (5, 4, 1, 1)


def test_registry_entry():
    assert "unet" in list_models()
    model = eqx.filter_eval_shape(create, "unet", num_classes=7, key=jax.random.key(0))
    assert len(model.encoder) == 4
    assert _output_shape(model, 32, 32) == (32, 32, 7)


def test_input_not_divisible_by_the_downsampling_is_named():
    model = _abstract(num_classes=5, base_features=4, num_levels=4, num_groups=2)
    with pytest.raises(
        ValueError,
        match=r"The height and width of `x` must be divisible by 2\*\*\(num_levels - 1\) "
        r"\(=8\). Received: 12x16.",
    ):
        _output_shape(model, 12, 16)


def test_bad_num_levels_is_named():
    with pytest.raises(ValueError, match=r"`num_levels` \(=0\) must be at least 1"):
        UNet(5, num_levels=0, key=jax.random.key(0))


def test_base_features_not_divisible_by_groups_is_named():
    with pytest.raises(
        ValueError,
        match=r"`base_features` \(=6\) must be a positive multiple of `num_groups` \(=4\)",
    ):
        UNet(5, base_features=6, num_groups=4, key=jax.random.key(0))
