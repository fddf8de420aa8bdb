import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import nn


def test_fully_connected_shapes_and_value(getkey):
    model = nn.FullyConnected(3, input_shape=(2, 2, 1), hidden_sizes=(4,), key=getkey())
    x = jnp.arange(4.0).reshape(2, 2, 1)
    hidden = jax.nn.relu(model.hidden[0].weight @ jnp.arange(4.0) + model.hidden[0].bias)
    expected = model.head.weight @ hidden + model.head.bias
    np.testing.assert_allclose(model(x), expected, rtol=1e-6)


def test_simple_cnn_features(getkey):
    model = nn.SimpleCNN(5, in_channels=2, num_filters=(4, 6), key=getkey())
    features = model.features(jnp.ones((8, 8, 2)))
    assert features["conv_0"].shape == (8, 8, 4)
    assert features["conv_1"].shape == (8, 8, 6)
    assert features["pre_logits"].shape == (6,)
    assert model(jnp.ones((8, 8, 2))).shape == (5,)


def test_wrong_input_rank_names_the_axes(getkey):
    model = nn.SimpleCNN(5, in_channels=2, key=getkey())
    with pytest.raises(Exception, match="height width channels"):
        model(jnp.ones((8, 8)))


def test_registry_lists_and_suggests(getkey):
    assert {"fully_connected", "simple_cnn"} <= set(nn.list_models())
    with pytest.raises(
        ValueError, match=r"Unknown model `name`. Did you mean 'simple_cnn'.* Received: 'simple_cn'\."
    ):
        nn.create("simple_cn", num_classes=3, key=getkey())
    model = nn.create("simple_cnn", num_classes=3, in_channels=1, num_filters=(4,), key=getkey())
    assert model(jnp.ones((8, 8, 1))).shape == (3,)


def test_registry_rejects_unknown_constructor_arguments(getkey):
    with pytest.raises(
        ValueError,
        match=r"`simple_cnn` takes the arguments: .*num_filters.* Did you mean 'num_filters'\? Received: unknown argument 'num_filter'\.",
    ):
        nn.create("simple_cnn", num_classes=3, num_filter=(4,), key=getkey())


def test_blocks_get_distinct_weights(getkey):
    model = nn.FullyConnected(3, input_shape=(4, 4, 1), hidden_sizes=(16, 16), key=getkey())
    assert not np.allclose(model.hidden[1].weight, model.hidden[0].weight[:16, :16])
    cnn = nn.SimpleCNN(3, in_channels=4, num_filters=(4, 4), key=getkey())
    assert not np.allclose(cnn.convs[0].weight, cnn.convs[1].weight)
