"""Batching a one-example model over a batch, with or without `eqx.nn.State`."""

import equinox as eqx
import jax
from jaxtyping import PRNGKeyArray, PyTree


def apply_model(
    model: eqx.Module,
    model_state: eqx.nn.State | None,
    inputs: PyTree,
    *,
    key: PRNGKeyArray | None,
) -> tuple[PyTree, eqx.nn.State | None]:
    """Runs `model` on every example of `inputs` with `jax.vmap(..., axis_name="batch")`.

    Arguments:
        model: a one-example model, called as `model(x, *, key)` or, with state,
            `model(x, state, *, key) -> (outputs, state)`.
        model_state: the model's `eqx.nn.State`, or `None` for a stateless model.
        inputs: a pytree of arrays with a leading batch axis.
        key: split into one key per example; `None` in inference.

    Returns:
        `(outputs, model_state)`: outputs with a leading batch axis, and the updated
        state (BatchNorm reduces over the `"batch"` axis, so it is shared by the batch).
    """
    batch_size = jax.tree.leaves(inputs)[0].shape[0]
    keys = None if key is None else jax.random.split(key, batch_size)
    key_axis = None if keys is None else 0
    if model_state is None:
        outputs = jax.vmap(lambda x, k: model(x, key=k), in_axes=(0, key_axis), axis_name="batch")(
            inputs, keys
        )
        return outputs, None
    return jax.vmap(
        lambda x, s, k: model(x, s, key=k),
        in_axes=(0, None, key_axis),
        out_axes=(0, None),
        axis_name="batch",
    )(inputs, model_state, keys)
