"""Frozen BatchNorm: training uses the running statistics, computes what inference does,
and leaves the statistics as they were, through a whole training step too."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scenic_eqx import loops, nn, tasks


def _is_norm(x) -> bool:
    return isinstance(x, nn.BatchNorm)


def _norms(model) -> list[nn.BatchNorm]:
    return [x for x in jax.tree.leaves(model, is_leaf=_is_norm) if _is_norm(x)]


def _assert_same_state(a: eqx.nn.State, b: eqx.nn.State):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@eqx.filter_jit
def _apply(model, state, x):
    return jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x, state)


def _trained_statistics(model, getkey):
    """A state whose running statistics are random, as after a few training steps:
    neither the initial ones nor any batch's, with a counter of 3 (debiasing active)."""
    state = eqx.nn.State(model)
    for norm in _norms(model):
        channels = norm.weight.shape[0]
        mean = jax.random.normal(getkey(), (channels,))
        var = jax.random.uniform(getkey(), (channels,), minval=0.5, maxval=2.0)
        counter = state.get(norm.batch_counter)
        state = state.set(norm.batch_state_index, (mean, var))
        state = state.set(norm.batch_counter, counter + 3)
    return state


def test_frozen_layer_equals_inference_and_keeps_its_statistics(getkey):
    norm = nn.BatchNorm(3, momentum=0.8)
    norm = eqx.tree_at(lambda n: (n.weight, n.bias), norm, (jax.random.normal(getkey(), (3,)),) * 2)
    state = _trained_statistics(norm, getkey)
    x = jax.random.normal(getkey(), (6, 3, 4, 5))
    frozen = nn.freeze_batch_norm(norm)
    assert frozen.frozen and not frozen.inference and not norm.frozen
    y, after = _apply(frozen, state, x)
    y_inference, _ = _apply(eqx.nn.inference_mode(norm), state, x)
    np.testing.assert_array_equal(y, y_inference)
    _assert_same_state(after, state)
    # Not the batch's statistics: the unfrozen layer in training gives another output.
    y_training, _ = _apply(norm, state, x)
    assert not np.allclose(y, y_training, atol=1e-3)
    # Built frozen: its initial statistics (mean 0, variance 1), however many steps.
    built = nn.BatchNorm(3, frozen=True)
    built_state = eqx.nn.State(built)
    y_built, after_built = _apply(built, built_state, x)
    np.testing.assert_allclose(y_built, x / np.sqrt(1 + 1e-5), rtol=1e-6)
    _assert_same_state(after_built, built_state)


def test_inference_mode_off_does_not_unfreeze():
    frozen = nn.freeze_batch_norm(nn.BatchNorm(2))
    assert eqx.nn.inference_mode(frozen, value=False).frozen


class _ConvNormHead(eqx.Module):
    """conv -> BatchNorm -> ReLU -> global mean -> linear: the smallest net with a BatchNorm."""

    conv: eqx.nn.Conv2d
    norm: nn.BatchNorm
    head: eqx.nn.Linear

    def __init__(self, *, key):
        conv_key, head_key = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(3, 4, 3, padding=1, key=conv_key)
        self.norm = nn.BatchNorm(4)
        self.head = eqx.nn.Linear(4, 3, key=head_key)

    def __call__(self, x, state, *, key=None):
        h, state = self.norm(self.conv(jnp.moveaxis(x, -1, 0)), state)
        return self.head(jnp.mean(jax.nn.relu(h), axis=(1, 2))), state


def test_train_step_of_a_frozen_model_keeps_the_statistics(getkey):
    model = _ConvNormHead(key=getkey())
    state = _trained_statistics(model, getkey)
    frozen = nn.freeze_batch_norm(model)
    batch = {
        "inputs": jax.random.normal(getkey(), (4, 6, 6, 3)),
        "label": np.array([0, 1, 2, 0], np.int32),
        "batch_mask": np.ones(4, np.float32),
    }
    # In training mode (a key, no inference flag) the frozen net computes what the
    # original computes in inference.
    apply = eqx.filter_jit(loops.apply_model)
    logits, after_forward = apply(frozen, state, batch["inputs"], key=getkey())
    logits_inference, _ = apply(eqx.nn.inference_mode(model), state, batch["inputs"], key=None)
    np.testing.assert_array_equal(logits, logits_inference)
    _assert_same_state(after_forward, state)
    # A whole optimizer step: the weights move, the statistics do not.
    optimizer = optax.sgd(0.1)
    train_state = loops.init_train_state(frozen, optimizer, key=getkey())
    train_state = eqx.tree_at(lambda s: s.model_state, train_state, state)
    step = eqx.filter_jit(loops.make_train_step(tasks.ClassificationTask(), optimizer))
    new_state, loss, _ = step(train_state, batch)
    assert np.isfinite(loss)
    _assert_same_state(new_state.model_state, state)
    assert not np.array_equal(new_state.model.conv.weight, frozen.conv.weight)


def test_detr_freezes_its_backbone_on_request(getkey):
    tiny = dict(
        num_queries=3, dim=8, num_heads=2, mlp_dim=16, num_encoder_layers=1, num_decoder_layers=1,
        backbone_depth=18, backbone_width=4, backbone_stem="cifar",
    )  # fmt: skip
    assert not any(n.frozen for n in _norms(nn.DETR(2, **tiny, key=getkey())))
    frozen = nn.DETR(2, **tiny, backbone_frozen_batch_norm=True, key=getkey())
    assert all(n.frozen for n in _norms(frozen)) and len(_norms(frozen)) == len(_norms(frozen.backbone))
    backbone = nn.detr_backbone(18, 4, stem="cifar", frozen_batch_norm=True, key=getkey())
    assert all(n.frozen for n in _norms(backbone))
    resnet = nn.ResNet(3, depth=18, width=4, stem="cifar", key=getkey())
    assert len(_norms(nn.freeze_batch_norm(resnet))) == len(_norms(resnet)) == 20
    assert all(n.frozen for n in _norms(nn.freeze_batch_norm(resnet)))


def test_a_model_without_batch_norm_is_an_error(getkey):
    with pytest.raises(ValueError, match=r"at least one `nn.BatchNorm`.*Received: a Linear"):
        nn.freeze_batch_norm(eqx.nn.Linear(2, 2, key=getkey()))
