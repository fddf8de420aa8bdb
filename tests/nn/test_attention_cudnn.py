"""The fused (cuDNN) path of `MultiHeadDotProductAttention`, checked on CPU.

On a GPU in half precision the layer calls `jax.nn.dot_product_attention(...,
implementation="cudnn")`. cuDNN needs a GPU, so these tests force that branch and run
the same call with XLA's implementation: the layouts, the scaling and the gradients
around it must give what the CPU core gives.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx.nn import MultiHeadDotProductAttention, _attention, attend


def _force_fused_path(monkeypatch) -> list:
    """Takes the fused branch whatever the backend, with XLA standing in for cuDNN;
    returns the list of implementations the layer asked for."""
    requested = []
    dot_product_attention = jax.nn.dot_product_attention

    def xla_instead(*args, implementation=None, **kwargs):
        requested.append(implementation)
        return dot_product_attention(*args, implementation="xla", **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", xla_instead)
    monkeypatch.setattr(_attention, "_use_cudnn", lambda q, mask, keep: True)
    return requested


def _loss_and_grads(attention, x_q, x_kv, x_v):
    """Batched output and the gradients of a scalar of it, for parameters and inputs."""

    def loss(attention, x_q, x_kv, x_v):
        out = jax.vmap(lambda q, k, v: attend(attention, q, k, v))(x_q, x_kv, x_v)
        return jnp.sum(out.astype(jnp.float32) * jnp.cos(jnp.arange(out.size).reshape(out.shape))), out

    (_, out), grads = eqx.filter_jit(eqx.filter_value_and_grad(loss, has_aux=True))(attention, x_q, x_kv, x_v)
    return out, grads


@pytest.mark.parametrize(
    "dtype, tolerance",
    [
        (jnp.float32, 1e-5),
        # XLA's implementation, standing in for cuDNN's, promotes bfloat16 with float32.
        pytest.param(jnp.bfloat16, 3e-2, marks=pytest.mark.standard_dtype_promotion),
    ],
)
def test_fused_path_equals_the_core(monkeypatch, getkey, dtype, tolerance):
    # Cross-attention with keys and values from different tokens (DETR's `attend`), two
    # heads of 8, 3 queries against 5 keys, over a batch of 2.
    attention = MultiHeadDotProductAttention(16, 2, kv_dim=12, key=getkey())
    attention = jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, attention)
    x_q = jax.random.normal(getkey(), (2, 3, 16), dtype)
    x_kv = jax.random.normal(getkey(), (2, 5, 12), dtype)
    x_v = jax.random.normal(getkey(), (2, 5, 12), dtype)
    core_out, core_grads = _loss_and_grads(attention, x_q, x_kv, x_v)

    requested = _force_fused_path(monkeypatch)
    fused_out, fused_grads = _loss_and_grads(attention, x_q, x_kv, x_v)

    assert requested == ["cudnn"]
    assert fused_out.dtype == core_out.dtype == dtype
    as_f32 = lambda x: np.asarray(x, np.float32)
    np.testing.assert_allclose(as_f32(fused_out), as_f32(core_out), rtol=tolerance, atol=tolerance)
    # Absolute tolerance on the scale of the largest gradient: the key bias's gradient
    # is zero up to rounding (softmax ignores a shift shared by every key).
    scale = max(float(np.abs(as_f32(g)).max()) for g in jax.tree.leaves(core_grads))
    for fused, core in zip(jax.tree.leaves(fused_grads), jax.tree.leaves(core_grads), strict=True):
        np.testing.assert_allclose(as_f32(fused), as_f32(core), rtol=tolerance, atol=tolerance * scale)


def test_fused_path_is_taken_on_a_gpu_in_half_precision_only(monkeypatch):
    q = jnp.zeros((12, 197, 64), jnp.bfloat16)  # ViT-B/16: 12 heads of 64, 197 tokens
    mask = jnp.ones((1, 197, 197), bool)
    keep = jnp.ones((12, 197, 197), jnp.bfloat16)
    assert not _attention._use_cudnn(q, None, None)  # on this CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert _attention._use_cudnn(q, None, None)
    assert _attention._use_cudnn(q.astype(jnp.float16), None, None)
    assert not _attention._use_cudnn(q.astype(jnp.float32), None, None)
    assert not _attention._use_cudnn(q, mask, None)  # masks and dropout: the core
    assert not _attention._use_cudnn(q, None, keep)
    assert not _attention._use_cudnn(jnp.zeros((12, 197, 60), jnp.bfloat16), None, None)
    assert not _attention._use_cudnn(jnp.zeros((2, 197, 256), jnp.bfloat16), None, None)
