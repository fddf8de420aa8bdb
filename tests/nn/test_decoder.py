import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.nn import Decoder, MultiHeadDotProductAttention, attend

# LLVM optimisation off: it is most of the compile time of these small programs on
# CPU, and the properties checked here do not depend on it.
_jit = functools.partial(eqx.filter_jit, compiler_options={"xla_backend_optimization_level": 0})

DIM, MEMORY_DIM, HEADS = 8, 6, 2


def _reference_attention(attention, x_q, x_k, x_v, mask=None):
    """Multi-head attention written out from the layer's weights, without its core."""

    def project(linear, x):
        return (x @ linear.weight.T + linear.bias[None]).reshape(len(x), HEADS, -1)

    q, k = project(attention.query, x_q), project(attention.key, x_k)
    v = project(attention.value, x_v)
    logits = jnp.einsum("qhd,khd->hqk", q, k) / jnp.sqrt(q.shape[-1])
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
    out = jnp.einsum("hqk,khd->qhd", jax.nn.softmax(logits), v).reshape(len(x_q), -1)
    return out @ attention.out.weight.T + attention.out.bias[None]


def _build(constructor, *args, seed=0, **kwargs):
    """`constructor(*args, **kwargs, key=...)` with its arrays drawn by numpy.

    Random initialisation compiles a PRNG program per shape, seconds each on CPU;
    these tests check properties that hold for any weights.
    """
    abstract = eqx.filter_eval_shape(constructor, *args, **kwargs, key=jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: (
            jnp.asarray(rng.normal(0.0, 0.5, s.shape), s.dtype) if isinstance(s, jax.ShapeDtypeStruct) else s
        ),
        abstract,
    )


@pytest.fixture(scope="module")
def decoder():
    return _build(Decoder, 2, DIM, HEADS, 16, memory_dim=MEMORY_DIM)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(1)
    return {
        name: jnp.asarray(rng.normal(size=shape), jnp.float32)
        for name, shape in [
            ("x", (5, DIM)),
            ("memory", (7, MEMORY_DIM)),
            ("query_pos", (5, DIM)),
            ("memory_pos", (7, MEMORY_DIM)),
        ]
    }


def test_attend_separate_keys_and_values():
    attention = _build(MultiHeadDotProductAttention, DIM, HEADS, kv_dim=MEMORY_DIM, dropout_rate=0.5)
    rng = np.random.default_rng(2)
    x_q = jnp.asarray(rng.normal(size=(3, DIM)), jnp.float32)
    x_k, x_v = jnp.asarray(rng.normal(size=(2, 4, MEMORY_DIM)), jnp.float32)
    mask = jnp.array([[True, False, True, True]] * 3)

    @_jit
    def run(attention, key):
        inference = eqx.nn.inference_mode(attention)
        return (
            attend(inference, x_q, x_k, x_v, mask),
            _reference_attention(inference, x_q, x_k, x_v, mask),
            # Equal but distinct key and value inputs take the separate path.
            attend(inference, x_q, x_v + 0, x_v),
            inference(x_q, x_v),
            # Attention dropout draws the same weights as the layer's.
            attend(attention, x_q, x_v + 0, x_v, key=key),
            attention(x_q, x_v, key=key),
        )

    # An RBG key: its random bits compile much faster than threefry's on CPU.
    out = run(attention, jax.random.key(0, impl="unsafe_rbg"))
    for i in (0, 2, 4):
        np.testing.assert_allclose(out[i], out[i + 1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(out[2], out[4], atol=1e-3)
    with pytest.raises(ValueError, match="`key` is required for attention dropout"):
        attend(attention, x_q, x_v + 0, x_v)


def test_block_is_three_residual_branches(decoder, inputs):
    x, memory, qp, mp = inputs["x"], inputs["memory"], inputs["query_pos"], inputs["memory_pos"]
    mask = jnp.tril(jnp.ones((5, 5), bool))

    @_jit
    def run(block):
        h = block.norm1(x)
        x1 = x + _reference_attention(block.self_attention, h + qp, h + qp, h, mask)
        h = block.norm2(x1)
        x2 = x1 + _reference_attention(block.cross_attention, h + qp, memory + mp, memory)
        expected = x2 + block.mlp(block.norm3(x2))
        return block(x, memory, self_mask=mask, query_pos=qp, memory_pos=mp), expected

    np.testing.assert_allclose(*run(decoder.blocks[0]), rtol=1e-4, atol=1e-4)


def test_zero_positions_equal_none(decoder, inputs):
    x, memory = inputs["x"], inputs["memory"]

    @_jit
    def run(decoder):
        zeros = decoder(x, memory, query_pos=jnp.zeros_like(x), memory_pos=jnp.zeros_like(memory))
        return zeros, decoder(x, memory)

    np.testing.assert_allclose(*run(decoder), rtol=1e-5, atol=1e-5)


def test_causal_hides_later_tokens(decoder, inputs):
    x, memory, query_pos = inputs["x"], inputs["memory"], inputs["query_pos"]
    # Not a constant shift: every layer norm would remove that.
    xs = jnp.stack([x, x.at[3].set(query_pos[0])])

    @_jit
    def run(decoder):
        causal = jax.vmap(lambda x: decoder(x, memory, causal=True, query_pos=query_pos))(xs)
        return causal, jax.vmap(lambda x: decoder(x, memory))(xs)

    (before, after), (free_before, free_after) = run(decoder)
    np.testing.assert_allclose(before[:3], after[:3], rtol=1e-5, atol=1e-5)
    assert not np.allclose(before[3:], after[3:], atol=1e-3)
    # Without the causal mask, every token sees the change.
    assert not np.allclose(free_before[:3], free_after[:3], atol=1e-3)


def test_causal_combines_with_self_mask(decoder, inputs):
    x, memory = inputs["x"], inputs["memory"]
    tril = jnp.tril(jnp.ones((5, 5), bool))
    first_and_self = jnp.eye(5, dtype=bool) | (jnp.arange(5)[None] == 0)

    @_jit
    def run(decoder):
        combined = decoder(x, memory, causal=True, self_mask=first_and_self)
        return combined, decoder(x, memory, self_mask=tril & first_and_self)

    np.testing.assert_allclose(*run(decoder), rtol=1e-5, atol=1e-5)


def test_memory_mask_hides_masked_memory(decoder, inputs):
    x, memory = inputs["x"], inputs["memory"]
    real = jnp.array([True] * 5 + [False] * 2)
    changed = memory.at[5:].set(100.0)

    @_jit
    def run(decoder):
        return (
            decoder(x, memory[:5]),
            decoder(x, changed, memory_mask=real),
            decoder(x, changed, memory_mask=jnp.broadcast_to(real, (5, 7))),
        )

    expected, key_padding, per_target = run(decoder)
    np.testing.assert_allclose(key_padding, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(per_target, expected, rtol=1e-5, atol=1e-5)


def test_intermediates(decoder, inputs):
    x, memory = inputs["x"], inputs["memory"]
    positions = dict(query_pos=inputs["query_pos"], memory_pos=inputs["memory_pos"])

    @_jit
    def run(decoder):
        h, each_block = x, []
        for block in decoder.blocks:
            h = block(h, memory, self_mask=jnp.tril(jnp.ones((5, 5), bool)), **positions)
            each_block.append(decoder.norm(h))
        return (
            decoder.intermediates(x, memory, causal=True, **positions),
            decoder(x, memory, causal=True, **positions),
            jnp.stack(each_block),
        )

    layers, last, each_block = run(decoder)
    assert layers.shape == (2, 5, DIM) and layers.dtype == jnp.float32
    np.testing.assert_allclose(layers, each_block, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layers[-1], last, rtol=1e-5, atol=1e-5)


def test_dropout_is_random_in_training_only(inputs):
    decoder = _build(
        Decoder,
        1,
        DIM,
        HEADS,
        16,
        memory_dim=MEMORY_DIM,
        dropout_rate=0.5,
        attention_dropout_rate=0.5,
    )
    x, memory = inputs["x"], inputs["memory"]

    @_jit
    def run(decoder, keys):
        inference = eqx.nn.inference_mode(decoder)
        train = jax.vmap(lambda k: decoder(x, memory, key=k))(keys)
        return train, inference(x, memory), inference(x, memory, key=keys[0])

    keys = jax.random.split(jax.random.key(0, impl="unsafe_rbg"))
    (first, second), inference, inference_with_key = run(decoder, keys)
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(inference, inference_with_key)


def test_blocks_get_distinct_initial_weights():
    # Small and square, with a fast-compiling RBG key: eager initialisation compiles
    # once per distinct shape.
    decoder = Decoder(2, 4, 1, 4, key=jax.random.key(0, impl="unsafe_rbg"))
    first, second = (b.self_attention.query.weight for b in decoder.blocks)
    assert not np.allclose(first, second)
    assert not np.allclose(first, decoder.blocks[0].cross_attention.query.weight)


def test_num_layers_error():
    with pytest.raises(ValueError, match=r"`num_layers` \(=0\) must be at least 1"):
        Decoder(0, DIM, HEADS, 16, key=jax.random.key(0))
