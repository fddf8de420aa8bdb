"""A non-finite gradient stops training even when the loss is finite; `debug_nans` names
the parameter whose gradient went bad; the last good checkpoint is kept."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_models import make_batches, params

from scenic_eqx import loops, tasks


class RootMLP(eqx.Module):
    """Logits plus `sqrt(|root . x|)`: finite for every input, but its gradient with
    respect to `root.weight` is NaN for an all-zero input (0 times the infinite slope of
    the square root at 0); the other parameters' gradients stay finite."""

    hidden: eqx.nn.Linear
    head: eqx.nn.Linear
    root: eqx.nn.Linear

    def __init__(self, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.hidden = eqx.nn.Linear(4, 16, key=k1)
        self.head = eqx.nn.Linear(16, 3, key=k2)
        self.root = eqx.nn.Linear(4, 1, use_bias=False, key=k3)

    def __call__(self, x, *, key=None):
        return self.head(jax.nn.relu(self.hidden(x))) + jnp.sqrt(jnp.abs(self.root(x)))


def _batches_with_zero_input_at(step):
    batches = make_batches(12)
    batches[step - 1]["inputs"][0] = 0.0
    return batches


def _fit(batches, tmp_path=None, optimizer=None, **kwargs):
    return loops.fit(
        RootMLP(key=jax.random.key(0)), tasks.ClassificationTask(), batches,
        optimizer=optimizer or optax.adam(1e-2), num_steps=12, key=jax.random.key(1), log_every=12,
        workdir=tmp_path, checkpoint_every=None if tmp_path is None else 3, progress=False, **kwargs,
    )  # fmt: skip


def test_the_oracle_model_has_a_finite_loss_and_a_nan_gradient():
    model, batch = RootMLP(key=jax.random.key(0)), _batches_with_zero_input_at(1)[0]
    task = tasks.ClassificationTask()
    loss, grads = eqx.filter_value_and_grad(lambda m: task.loss(jax.vmap(m)(batch["inputs"]), batch))(model)
    assert np.isfinite(loss)
    assert not np.isfinite(grads.root.weight).all()
    assert all(np.isfinite(g).all() for g in jax.tree.leaves((grads.hidden, grads.head)))


def test_a_nan_gradient_with_a_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(
        FloatingPointError, match=r"loss or a gradient is not finite at step 7.*debug_nans=True"
    ):
        _fit(_batches_with_zero_input_at(7), tmp_path)
    checkpointer = loops.Checkpointer(tmp_path / "checkpoints")
    assert checkpointer.all_steps() == [3, 6]  # nothing saved after the bad step
    like = loops.init_train_state(RootMLP(key=jax.random.key(0)), optax.adam(1e-2), key=jax.random.key(1))
    restored = checkpointer.restore(train_state=like)["train_state"]
    assert all(np.isfinite(p).all() for p in params(restored))


@pytest.mark.parametrize("steps_per_dispatch", [1, 4])
def test_debug_nans_names_the_parameter_whose_gradient_is_not_finite(steps_per_dispatch):
    # Clipping by the global norm spreads the NaN over every parameter's update: only
    # the gradient itself tells which parameter it came from.
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    match = (
        r"not finite at step 7: .* Its loss is finite\. "
        r"The first parameter whose gradient is not finite: `root\.weight`\."
    )
    with pytest.raises(FloatingPointError, match=match):
        _fit(_batches_with_zero_input_at(7), optimizer=optimizer, debug_nans=True,
             steps_per_dispatch=steps_per_dispatch)  # fmt: skip


def test_debug_nans_says_when_the_loss_itself_is_not_finite():
    batches = make_batches(12)
    batches[4]["inputs"][0, 0] = np.nan
    with pytest.raises(FloatingPointError, match=r"at step 5: .* Its loss is not finite\. .*`hidden.weight`"):
        _fit(batches, debug_nans=True)


def test_updates_an_optimizer_skips_on_purpose_do_not_stop_training():
    # `apply_if_finite` drops the bad step's update: the parameters stay finite.
    optimizer = optax.apply_if_finite(optax.adam(1e-2), max_consecutive_errors=3)
    state, history = _fit(_batches_with_zero_input_at(7), optimizer=optimizer)
    assert int(state.step) == 12 and np.isfinite(history[-1]["loss"])
    assert all(np.isfinite(p).all() for p in params(state))
