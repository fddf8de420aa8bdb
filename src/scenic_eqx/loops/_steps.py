"""The train and eval steps: small pure functions that projects may fork."""

from collections.abc import Callable

import equinox as eqx
import jax
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ..tasks import AbstractTask
from ._accumulate import accumulate_gradients
from ._apply import apply_model
from ._precision import Precision, get_precision
from ._train_state import TrainState, partition_trainable

Batch = dict[str, PyTree]
Metrics = dict[str, tuple[Float[Array, ""], Float[Array, ""]]]


def model_outputs(
    model: eqx.Module,
    model_state: eqx.nn.State | None,
    inputs: PyTree,
    precision: Precision,
    *,
    key: PRNGKeyArray | None,
) -> tuple[PyTree, eqx.nn.State | None]:
    """`apply_model` under `precision`: parameters and inputs cast to its compute dtype,
    outputs to its output dtype. The model state (BatchNorm statistics) is not cast."""
    model = precision.cast_to_compute(model)
    outputs, model_state = apply_model(model, model_state, precision.cast_to_compute(inputs), key=key)
    return precision.cast_to_output(outputs), model_state


def make_train_step(
    task: AbstractTask,
    optimizer: optax.GradientTransformation,
    *,
    precision: str | Precision = "float32",
    accumulate_steps: int = 1,
) -> Callable[[TrainState, Batch], tuple[TrainState, Float[Array, ""], Metrics]]:
    """One optimizer step: forward, `task.loss`, gradient, update and `task.metrics`.

    The returned function is pure and unjitted: `fit` jits it over a mesh; a project
    can wrap or fork it.

    Arguments:
        task: supplies the loss and the metrics.
        optimizer: the optax transformation applied to the gradients.
        precision: `"float32"`, `"bfloat16"` (bfloat16 compute, float32 parameters,
            gradients, optimizer state and loss) or a `Precision`.
        accumulate_steps: split each batch into this many micro-batches, run them one
            after another (`lax.scan`) and apply one update with their accumulated
            gradient (see `accumulate_gradients`).

    Returns:
        `train_step(state, batch) -> (new_state, loss, metrics)`, where `metrics` are the
        task's `(value_sum, normalizer)` pairs for the batch, computed with the
        parameters before the update.
    """
    precision = get_precision(precision)
    if not isinstance(accumulate_steps, int) or isinstance(accumulate_steps, bool) or accumulate_steps < 1:
        raise ValueError(f"`accumulate_steps` must be a positive integer. Received: {accumulate_steps!r}.")

    def loss_fn(params, static, model_state, batch, key):
        model = eqx.combine(params, static)
        outputs, model_state = model_outputs(model, model_state, batch["inputs"], precision, key=key)
        return task.loss(outputs, batch), (outputs, model_state)

    def loss_grads_and_metrics(params, static, model_state, batch, key):
        (loss, (outputs, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, static, model_state, batch, key
        )
        return loss, grads, model_state, task.metrics(outputs, batch)

    def train_step(state: TrainState, batch: Batch):
        key = jax.random.fold_in(state.key, state.step)
        params, static = partition_trainable(state.model)
        if accumulate_steps == 1:
            loss, grads, model_state, metrics = loss_grads_and_metrics(
                params, static, state.model_state, batch, key
            )
        else:
            loss, grads, model_state, metrics = accumulate_gradients(
                loss_grads_and_metrics,
                params,
                static,
                state.model_state,
                batch,
                key,
                accumulate_steps,
            )
        # optax mixes Python-float hyperparameters with its int32 step count (adam's bias
        # correction), which strict dtype promotion refuses: the optimizer runs under the
        # standard rules whatever the caller's setting.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, state.opt_state, params)
        model = eqx.apply_updates(state.model, updates)
        new_state = TrainState(model, model_state, opt_state, state.step + 1, state.key)
        return new_state, loss, metrics

    return train_step


def make_eval_step(
    task: AbstractTask, *, precision: str | Precision = "float32"
) -> Callable[[eqx.Module, eqx.nn.State | None, Batch], Metrics]:
    """Metrics of one batch in inference mode (no dropout, BatchNorm running statistics).

    Arguments:
        task: supplies the metrics.
        precision: the compute policy, as in `make_train_step`.

    Returns:
        `eval_step(model, model_state, batch) -> metrics`, the task's
        `(value_sum, normalizer)` pairs.
    """
    precision = get_precision(precision)

    def eval_step(model: eqx.Module, model_state: eqx.nn.State | None, batch: Batch):
        return task.metrics(inference_outputs(model, model_state, batch, precision), batch)

    return eval_step


def inference_outputs(
    model: eqx.Module, model_state: eqx.nn.State | None, batch: Batch, precision: Precision
) -> PyTree:
    """The model's outputs for `batch["inputs"]` in inference mode, under `precision`."""
    model = eqx.nn.inference_mode(model)
    outputs, _ = model_outputs(model, model_state, batch["inputs"], precision, key=None)
    return outputs
