import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.nn import Encoder, EncoderBlock


def _stack(blocks):
    """The blocks' arrays stacked on a leading axis; their static parts must agree."""
    params = [eqx.filter(b, eqx.is_array) for b in blocks]
    return eqx.combine(jax.tree.map(lambda *a: jnp.stack(a), *params), blocks[0])


@pytest.fixture(scope="module")
def encoders():
    key = jax.random.key(0)
    kwargs = {"num_layers": 3, "dim": 8, "num_heads": 2, "mlp_dim": 16, "stochastic_depth": 0.3}
    unrolled = Encoder(**kwargs, key=key)
    scanned = Encoder(**kwargs, scan_layers=True, key=key)
    return unrolled, scanned


def test_block_is_two_residual_branches(getkey):
    block = EncoderBlock(8, 2, 16, key=getkey())
    x = jax.random.normal(getkey(), (5, 8))

    @eqx.filter_jit
    def reference(block, x):
        y = x + block.attention(block.norm1(x))
        return y + block.mlp(block.norm2(y))

    np.testing.assert_allclose(eqx.filter_jit(block)(x), reference(block, x), rtol=1e-5, atol=1e-5)


def test_scan_equals_unrolled_given_the_same_weights(encoders, getkey):
    unrolled, scanned = encoders
    scanned = eqx.tree_at(lambda e: e.blocks, scanned, _stack(unrolled.blocks))
    x = jax.random.normal(getkey(), (5, 8))
    call = eqx.filter_jit(lambda e, x, k: e(x, key=k))
    inference = eqx.nn.inference_mode
    np.testing.assert_allclose(
        call(inference(unrolled), x, None), call(inference(scanned), x, None), rtol=1e-5, atol=1e-5
    )
    # Same key: the same dropped branches, layer by layer, with the same rates.
    key = getkey()
    np.testing.assert_allclose(call(unrolled, x, key), call(scanned, x, key), rtol=1e-5, atol=1e-5)


def test_blocks_have_distinct_weights(encoders):
    unrolled, scanned = encoders
    first = unrolled.blocks[0].attention.query.weight
    for block in unrolled.blocks[1:]:
        assert not np.allclose(first, block.attention.query.weight)
    stacked = scanned.blocks.mlp.dense1.weight
    assert stacked.shape == (3, 16, 8)
    assert not np.allclose(stacked[0], stacked[1]) and not np.allclose(stacked[1], stacked[2])


def test_stochastic_depth_grows_linearly(encoders):
    unrolled, scanned = encoders
    assert [b.drop_path.rate for b in unrolled.blocks] == pytest.approx([0.0, 0.15, 0.3])
    assert scanned.drop_path_rates == pytest.approx((0.0, 0.15, 0.3))


def test_num_layers_error(getkey):
    with pytest.raises(ValueError, match=r"`num_layers` \(=0\) must be at least 1"):
        Encoder(0, 8, 2, 16, key=getkey())
