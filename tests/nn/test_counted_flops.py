"""`nn.counted_forward_flops`: XLA's count for any model, in `nn.forward_flops`' convention."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import nn

SIZE = dict(patch_size=2, hidden_size=32, num_heads=4, mlp_dim=64, image_size=8, in_channels=1)


def test_agrees_with_the_analytic_count_on_a_vit(getkey):
    vit = eqx.filter_eval_shape(nn.ViT, 10, **SIZE, num_layers=2, classifier="gap", key=getkey())
    np.testing.assert_allclose(
        nn.counted_forward_flops(vit, (8, 8, 1)), nn.forward_flops(vit, (8, 8, 1)), rtol=0.01
    )


class _TwoInputs(eqx.Module):
    """One linear layer per entry of a dict input: `2 * in * out` FLOPs each, plus the bias adds."""

    a: eqx.nn.Linear
    b: eqx.nn.Linear

    def __call__(self, inputs):
        return self.a(inputs["a"]) + self.b(inputs["b"])


def test_counts_a_model_taking_a_dict_of_inputs(getkey):
    model = _TwoInputs(eqx.nn.Linear(16, 4, key=getkey()), eqx.nn.Linear(8, 4, key=getkey()))
    example = {"a": jax.ShapeDtypeStruct((16,), jnp.float32), "b": jnp.zeros(8)}
    # Two matrix-vector products, two bias adds and the sum of the two outputs.
    assert nn.counted_forward_flops(model, example) == 2 * 16 * 4 + 2 * 8 * 4 + 3 * 4


def test_dropout_is_not_counted(getkey):
    with_dropout = eqx.filter_eval_shape(
        nn.ViT, 10, **SIZE, num_layers=1, dropout_rate=0.5, classifier="gap", key=getkey()
    )
    without = eqx.filter_eval_shape(nn.ViT, 10, **SIZE, num_layers=1, classifier="gap", key=getkey())
    assert nn.counted_forward_flops(with_dropout, (8, 8, 1)) == nn.counted_forward_flops(without, (8, 8, 1))


def test_a_bad_example_is_named(getkey):
    model = eqx.nn.Linear(4, 2, key=getkey())
    with pytest.raises(TypeError, match="`example` must be"):
        nn.counted_forward_flops(model, [4])
