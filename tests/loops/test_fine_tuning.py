"""Freezing parameters by path, and weight-decay masks."""

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
from tiny_models import DropoutMLP, run

from scenic_eqx import loops, nn


def test_frozen_parameters_do_not_move_and_carry_no_optimizer_state():
    model = DropoutMLP(key=jax.random.key(0))
    optimizer = loops.freeze(optax.adam(1e-2), [r"^hidden\."])
    state, _ = run(model, 4, optimizer=optimizer)
    np.testing.assert_array_equal(state.model.hidden.weight, model.hidden.weight)
    np.testing.assert_array_equal(state.model.hidden.bias, model.hidden.bias)
    assert not np.allclose(state.model.head.weight, model.head.weight)
    # Adam's two moments for the head's weight and bias only, plus its step count.
    moments = [x for x in jax.tree.leaves(state.opt_state) if x.ndim > 0]
    assert sorted(x.shape for x in moments) == sorted([(3, 16), (3,)] * 2)


@pytest.mark.parametrize(
    "patterns, match",
    [
        (
            ["^head", "^body"],
            r"`frozen` patterns \['\^body'\] match no trainable parameter path \(paths look like 'hidden.weight'\)",
        ),
        (["(unclosed"], r"`frozen` holds an invalid regular expression. Received: '\(unclosed'"),
        ("head", r"`frozen` must be a sequence of patterns, not one string. Received: 'head'"),
    ],
)
def test_freeze_errors(patterns, match):
    with pytest.raises(ValueError, match=match):
        optimizer = loops.freeze(optax.sgd(0.1), patterns)
        optimizer.init(loops.partition_trainable(DropoutMLP(key=jax.random.key(0)))[0])


def test_weight_decay_mask_skips_biases_norms_and_position_embeddings():
    model = nn.ViT(3, 4, 16, 2, 2, 32, 8, key=jax.random.key(0))
    params = loops.partition_trainable(model)[0]
    mask = loops.weight_decay_mask(params)
    decayed = {
        loops.parameter_path(path)
        for path, flag in jax.tree_util.tree_leaves_with_path(mask) if flag
    }  # fmt: skip
    assert "encoder.blocks[0].attention.query.weight" in decayed
    assert "embedding.weight" in decayed and "head.weight" in decayed
    assert not any(name.endswith(".bias") or "norm" in name for name in decayed)
    assert "pos_embedding.weight" not in decayed and "cls_token" not in decayed


# optax's adamw mixes its int32 step count with Python floats (bias correction), which
# strict promotion refuses; `fit`'s step runs the optimizer under the standard rules too.
@pytest.mark.standard_dtype_promotion
def test_adamw_with_the_mask_leaves_undecayed_parameters_alone():
    """With zero gradients only weight decay moves a parameter."""
    model = DropoutMLP(key=jax.random.key(0))
    params = loops.partition_trainable(model)[0]
    optimizer = optax.adamw(0.1, weight_decay=1.0, mask=loops.weight_decay_mask)
    zeros = jax.tree.map(np.zeros_like, params)
    updates, _ = optimizer.update(zeros, optimizer.init(params), params)
    moved = eqx.apply_updates(params, updates)
    np.testing.assert_array_equal(moved.hidden.bias, params.hidden.bias)
    np.testing.assert_allclose(moved.hidden.weight, 0.9 * params.hidden.weight, rtol=1e-6)
