"""PerDatasetHeads: each dataset's example through the shared model and its own head."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import loops, nn


def _model(key):
    k1, k2 = jax.random.split(key)
    base = nn.FullyConnected(4, (3, 3, 1), hidden_sizes=(8,), key=k1)
    return base, nn.PerDatasetHeads(base, {"digits": base.head, "parity": eqx.nn.Linear(8, 2, key=k2)})


def test_each_dataset_goes_through_the_shared_model_and_its_own_head(getkey):
    base, model = _model(getkey())
    assert model.model.head is None  # the model's own head lives in `heads`
    x = {"digits": jax.random.normal(getkey(), (3, 3, 1)), "parity": jax.random.normal(getkey(), (3, 3, 1))}
    outputs = model(x)
    np.testing.assert_array_equal(outputs["digits"], base(x["digits"]))
    parity = eqx.tree_at(lambda m: m.head, base, model.heads["parity"])
    np.testing.assert_array_equal(outputs["parity"], parity(x["parity"]))
    assert outputs["parity"].shape == (2,)
    # The view of the first dataset is its single-dataset model, leaf for leaf.
    for got, want in zip(jax.tree.leaves(model.view("digits")), jax.tree.leaves(base)):
        np.testing.assert_array_equal(got, want)


def test_gradients_reach_the_shared_model_from_every_dataset_and_each_head_from_its_own(getkey):
    _, model = _model(getkey())
    x = {"digits": jnp.ones((3, 3, 1)), "parity": jnp.ones((3, 3, 1))}
    grads = eqx.filter_grad(lambda m: jnp.sum(m(x)["parity"]))(model)
    assert not np.any(grads.heads["digits"].weight) and np.any(grads.heads["parity"].weight)
    assert np.any(grads.model.hidden[0].weight)


class _Normalized(eqx.Module):
    norm: nn.BatchNorm
    head: eqx.nn.Linear

    def __call__(self, x, state, *, key=None):
        x, state = self.norm(x, state)
        return self.head(x), state


def test_a_stateful_model_updates_its_statistics_with_each_dataset_in_turn(getkey):
    base = _Normalized(nn.BatchNorm(2), eqx.nn.Linear(2, 2, key=getkey()))
    model = nn.PerDatasetHeads(base, {"a": base.head, "b": base.head})
    state = eqx.nn.State(model)
    x = {"a": jnp.zeros((6, 2)), "b": jnp.full((6, 2), 10.0)}
    _, state_after = loops.apply_model(model, state, x, key=None)
    # The same as running the single-dataset models on "a", then on "b".
    _, expected = loops.apply_model(model.view("a"), state, x["a"], key=None)
    _, expected = loops.apply_model(model.view("b"), expected, x["b"], key=None)
    _, only_a = loops.apply_model(model.view("a"), state, x["a"], key=None)
    for got, want in zip(jax.tree.leaves(state_after), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(got, want)
    assert any(np.any(w != o) for w, o in zip(jax.tree.leaves(expected), jax.tree.leaves(only_a)))


def test_bad_arguments_are_named(getkey):
    base, model = _model(getkey())
    with pytest.raises(ValueError, match="at attribute `head_name`.*without `classifier`"):
        nn.PerDatasetHeads(base, {"a": base.head}, head_name="classifier")
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        nn.PerDatasetHeads(base, {"a b": base.head})
    with pytest.raises(ValueError, match=r"an example of each dataset \['digits', 'parity'\].*\['digits'\]"):
        model({"digits": jnp.ones((3, 3, 1))})
    with pytest.raises(KeyError, match="one of the datasets"):
        model.view("mnist")
