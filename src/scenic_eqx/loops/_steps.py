"""The train and eval steps: small pure functions that projects may fork."""

from collections.abc import Callable

import equinox as eqx
import jax
import optax
from jaxtyping import Array, Float, PyTree

from ..tasks import AbstractTask
from ._apply import apply_model
from ._train_state import TrainState, partition_trainable

Batch = dict[str, PyTree]
Metrics = dict[str, tuple[Float[Array, ""], Float[Array, ""]]]


def make_train_step(
    task: AbstractTask, optimizer: optax.GradientTransformation
) -> Callable[[TrainState, Batch], tuple[TrainState, Float[Array, ""], Metrics]]:
    """One optimizer step: forward, `task.loss`, gradient, update and `task.metrics`.

    The returned function is pure and unjitted: `fit` jits it over a mesh; a project
    can wrap or fork it.

    Returns:
        `train_step(state, batch) -> (new_state, loss, metrics)`, where `metrics` are the
        task's `(value_sum, normalizer)` pairs for the batch, computed with the
        parameters before the update.
    """

    def train_step(state: TrainState, batch: Batch):
        key = jax.random.fold_in(state.key, state.step)
        params, static = partition_trainable(state.model)

        def loss_fn(params):
            model = eqx.combine(params, static)
            outputs, model_state = apply_model(
                model, state.model_state, batch["inputs"], key=key
            )
            return task.loss(outputs, batch), (outputs, model_state)

        (loss, (outputs, model_state)), grads = jax.value_and_grad(
            loss_fn, has_aux=True
        )(params)
        updates, opt_state = optimizer.update(grads, state.opt_state, params)
        model = eqx.apply_updates(state.model, updates)
        new_state = TrainState(model, model_state, opt_state, state.step + 1, state.key)
        return new_state, loss, task.metrics(outputs, batch)

    return train_step


def make_eval_step(
    task: AbstractTask,
) -> Callable[[eqx.Module, eqx.nn.State | None, Batch], Metrics]:
    """Metrics of one batch in inference mode (no dropout, BatchNorm running statistics).

    Returns:
        `eval_step(model, model_state, batch) -> metrics`, the task's
        `(value_sum, normalizer)` pairs.
    """

    def eval_step(model: eqx.Module, model_state: eqx.nn.State | None, batch: Batch):
        model = eqx.nn.inference_mode(model)
        outputs, _ = apply_model(model, model_state, batch["inputs"], key=None)
        return task.metrics(outputs, batch)

    return eval_step
