import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from scenic_eqx.nn import MultiHeadDotProductAttention, dot_product_attention_core


def _identity_attention(dim, num_heads):
    """Attention whose projections are identities with zero bias."""
    attention = MultiHeadDotProductAttention(dim, num_heads, key=jax.random.key(0))
    eye, zero = jnp.eye(dim), jnp.zeros(dim)
    for name in ("query", "key", "value", "out"):
        attention = eqx.tree_at(
            lambda a, name=name: (getattr(a, name).weight, getattr(a, name).bias),
            attention,
            (eye, zero),
        )
    return attention


def _numpy_attention(q, k, v, mask=None):
    logits = q @ k.T / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)) @ v


def test_one_head_matches_numpy_softmax():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
    out = eqx.filter_jit(_identity_attention(2, 1))(jnp.asarray(x))
    # First row by hand: logits [1, 0, 1] / sqrt(2).
    w = np.exp(np.array([1.0, 0.0, 1.0]) / np.sqrt(2))
    np.testing.assert_allclose(out[0], (w / w.sum()) @ x, rtol=1e-6)
    np.testing.assert_allclose(out, _numpy_attention(x, x, x), rtol=1e-6)


def test_cross_attention_with_mask_and_two_heads(getkey):
    q = np.asarray(jax.random.normal(getkey(), (3, 4)))
    kv = np.asarray(jax.random.normal(getkey(), (5, 4)))
    mask = np.array([[1, 1, 0, 0, 1], [0, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)
    attention = eqx.filter_jit(_identity_attention(4, 2))
    out = attention(jnp.asarray(q), jnp.asarray(kv), jnp.asarray(mask))
    expected = np.concatenate(
        [_numpy_attention(q[:, s], kv[:, s], kv[:, s], mask) for s in (slice(0, 2), slice(2, 4))],
        axis=1,
    )
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    per_head = np.stack([mask, np.ones_like(mask)])
    out_heads = attention(jnp.asarray(q), jnp.asarray(kv), jnp.asarray(per_head))
    np.testing.assert_allclose(out_heads[:, :2], expected[:, :2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        out_heads[:, 2:], _numpy_attention(q[:, 2:], kv[:, 2:], kv[:, 2:]), rtol=1e-5, atol=1e-6
    )


def _plain_core(q, k, v, mask, keep):
    logits = jnp.einsum("hqd,hkd->hqk", q, k)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    if keep is not None:
        weights = weights * keep
    return jnp.einsum("hqk,hkd->hqd", weights, v)


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("with_keep", [False, True])
def test_core_gradients_equal_plain_autodiff(getkey, with_mask, with_keep):
    q, k, v = (jax.random.normal(getkey(), (2, n, 4)) for n in (3, 5, 5))
    mask = jax.random.bernoulli(getkey(), 0.6, (1, 3, 5)) if with_mask else None
    if with_mask:
        mask = mask.at[0, 0].set(False)  # A fully masked row.
    keep = 2.0 * jax.random.bernoulli(getkey(), 0.5, (2, 3, 5)).astype(jnp.float32) if with_keep else None
    cotangent = jax.random.normal(getkey(), (2, 3, 4))

    def loss(core):
        return lambda q, k, v: jnp.sum(core(q, k, v, mask, keep) * cotangent)

    ours = jax.jit(jax.value_and_grad(loss(dot_product_attention_core), argnums=(0, 1, 2)))
    plain = jax.jit(jax.value_and_grad(loss(_plain_core), argnums=(0, 1, 2)))
    for a, b in zip(jax.tree.leaves(ours(q, k, v)), jax.tree.leaves(plain(q, k, v))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_dropout_needs_a_key_and_is_off_in_inference(getkey):
    attention = MultiHeadDotProductAttention(8, 2, dropout_rate=0.5, key=getkey())
    x = jax.random.normal(getkey(), (4, 8))
    with pytest.raises(ValueError, match="`key` is required for attention dropout"):
        attention(x)
    a, b = (eqx.filter_jit(attention)(x, key=getkey()) for _ in range(2))
    assert not np.allclose(a, b)
    inference = eqx.filter_jit(eqx.nn.inference_mode(attention))
    np.testing.assert_array_equal(inference(x), inference(x, key=getkey()))


def test_shape_dtype_and_errors(getkey):
    attention = MultiHeadDotProductAttention(8, 2, kv_dim=6, key=getkey())
    out = eqx.filter_eval_shape(attention, jnp.ones((3, 8)), jnp.ones((5, 6)))
    assert out.shape == (3, 8) and out.dtype == jnp.float32
    with pytest.raises(ValueError, match=r"`dim` \(=8\) must be divisible by `num_heads` \(=3\)"):
        MultiHeadDotProductAttention(8, 3, key=getkey())
    with pytest.raises(jaxtyping.TypeCheckError, match="k"):
        attention(jnp.ones((3, 8)), jnp.ones((5, 6)), jnp.ones((3, 4), bool))
    with pytest.raises(jaxtyping.TypeCheckError, match="q dim"):
        attention(jnp.ones((2, 3, 8)))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("with_mask", [False, True])
def test_half_precision_logits_and_softmax_are_float32(dtype, with_mask):
    # Logits 2**16 + (0, 1, 2): bfloat16 steps by 512 there (all three would be equal)
    # and float16 overflows past 65504 (inf - inf = nan); float32 holds them exactly.
    query = jnp.array([[[256.0, 1.0]]], dtype)
    key = jnp.array([[[256.0, 0.0], [256.0, 1.0], [256.0, 2.0]]], dtype)
    value = jnp.eye(3, dtype=dtype)[None]  # Each output is then the weights themselves.
    mask = jnp.array([[[True, True, False]]]) if with_mask else None
    out = jax.jit(dot_product_attention_core)(query, key, value, mask, None)
    assert out.dtype == dtype
    logits = np.array([0.0, 1.0, 2.0] if mask is None else [0.0, 1.0])
    expected = np.exp(logits) / np.exp(logits).sum()
    expected = np.pad(expected, (0, 3 - len(expected)))
    np.testing.assert_allclose(out[0, 0].astype(np.float32), expected, rtol=2**-8)


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("with_keep", [False, True])
def test_bfloat16_core_gradients_are_close_to_float32(getkey, with_mask, with_keep):
    # Large logits: confident rows, whose softmax backward subtracts nearly equal terms
    # (a probability near 1 rounded to bfloat16 would make the gradients wrong).
    q, k, v = (2.0 * jax.random.normal(getkey(), (2, n, 4)) for n in (3, 5, 5))
    mask = jax.random.bernoulli(getkey(), 0.6, (1, 3, 5)) if with_mask else None
    if with_mask:
        mask = mask.at[0, 0].set(False)  # A fully masked row.
    keep = 2.0 * jax.random.bernoulli(getkey(), 0.5, (2, 3, 5)).astype(jnp.float32) if with_keep else None
    cotangent = jax.random.normal(getkey(), (2, 3, 4))

    @functools.partial(jax.jit, static_argnums=3)
    def value_and_grads(q, k, v, dtype):
        def loss(q, k, v):
            kept = None if keep is None else keep.astype(dtype)
            out = dot_product_attention_core(q, k, v, mask, kept)
            return jnp.sum(out.astype(jnp.float32) * cotangent), out

        args = (x.astype(dtype) for x in (q, k, v))
        return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(*args)

    # The same (bfloat16-representable) inputs, computed in float32 as the reference.
    q, k, v = (x.astype(jnp.bfloat16).astype(jnp.float32) for x in (q, k, v))
    (_, out), grads = value_and_grads(q, k, v, jnp.bfloat16)
    (_, out_reference), grads_reference = value_and_grads(q, k, v, jnp.float32)
    # A few roundings to bfloat16 (2**-9 each) of the terms of each sum.
    for a, b in zip(*map(jax.tree.leaves, ((out, grads), (out_reference, grads_reference)))):
        assert a.dtype == jnp.bfloat16 and jnp.all(jnp.isfinite(a))
        atol = 2**-5 * float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(a.astype(np.float32), b, atol=atol)


def test_float32_core_has_no_casts():
    # Half precision gets float32 islands; float32 itself must be computed as it was.
    x = jnp.ones((2, 3, 4))
    keep = jnp.ones((2, 3, 3))
    core = lambda q, k, v: dot_product_attention_core(q, k, v, None, keep)
    jaxpr = jax.make_jaxpr(lambda x: jax.vjp(core, x, x, x)[1](x))(x)
    assert "convert_element_type" not in str(jaxpr)


def test_head_dim_sets_a_width_other_than_dim(getkey):
    # 3 heads of 4 on 10-wide tokens: the attention is 12 wide, 10 not divisible by 3.
    attention = MultiHeadDotProductAttention(10, 3, kv_dim=6, head_dim=4, key=getkey())
    shapes = {name: getattr(attention, name).weight.shape for name in ("query", "key", "value", "out")}
    assert shapes == {"query": (12, 10), "key": (12, 6), "value": (12, 6), "out": (10, 12)}
    x_q = np.asarray(jax.random.normal(getkey(), (5, 10)))
    x_kv = np.asarray(jax.random.normal(getkey(), (7, 6)))
    out = eqx.filter_jit(attention)(jnp.asarray(x_q), jnp.asarray(x_kv))

    def project(layer, x):
        return x @ np.asarray(layer.weight).T + np.asarray(layer.bias)

    q, k, v = project(attention.query, x_q), project(attention.key, x_kv), project(attention.value, x_kv)
    # Each head attends with its own 4 columns, scaled by 1/sqrt(4); `out` maps 12 -> 10.
    heads = [_numpy_attention(q[:, s], k[:, s], v[:, s]) for s in (slice(0, 4), slice(4, 8), slice(8, 12))]
    expected = project(attention.out, np.concatenate(heads, axis=1))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_head_dim_equal_to_the_default_changes_nothing():
    key = jax.random.key(3)
    default = MultiHeadDotProductAttention(8, 2, key=key)
    explicit = MultiHeadDotProductAttention(8, 2, head_dim=4, key=key)
    for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(explicit)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(dim=10, num_heads=3),
            r"`dim` \(=10\) must be divisible by `num_heads` \(=3\), or give `head_dim`",
        ),
        (dict(dim=8, num_heads=2, head_dim=0), r"`head_dim` must be a positive integer\. Received: 0\."),
        (dict(dim=8, num_heads=0), r"`num_heads` must be a positive integer\. Received: 0\."),
    ],
)
def test_head_errors(getkey, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadDotProductAttention(**kwargs, key=getkey())
