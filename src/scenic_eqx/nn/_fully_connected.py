"""A fully connected classifier: Scenic's simplest baseline."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._input_checks import check_flat_input


class FullyConnected(eqx.Module):
    """Flattens an image and applies `Linear -> ReLU` layers, then a linear head.

    Arguments:
        num_classes: number of output logits.
        input_shape: `(height, width, channels)` of one example.
        hidden_sizes: width of each hidden layer.
        key: PRNG key for initialisation (keyword only).
    """

    hidden: tuple[eqx.nn.Linear, ...]
    head: eqx.nn.Linear

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        hidden_sizes: Sequence[int] = (512, 256),
        *,
        key: PRNGKeyArray,
    ):
        sizes = [int(jnp.prod(jnp.array(input_shape))), *hidden_sizes]
        keys = jax.random.split(key, len(hidden_sizes) + 1)
        self.hidden = tuple(
            eqx.nn.Linear(n_in, n_out, key=k) for n_in, n_out, k in zip(sizes[:-1], sizes[1:], keys[:-1])
        )
        self.head = eqx.nn.Linear(sizes[-1], num_classes, key=keys[-1])

    def __call__(
        self,
        x: Float[Array, "height width channels"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, " num_classes"]:
        """Logits of one example; `key` is unused (the model has no randomness)."""
        del key
        first = self.hidden[0] if self.hidden else self.head
        check_flat_input(x, model="FullyConnected", num_values=first.in_features)
        h = jnp.ravel(x)
        for layer in self.hidden:
            h = jax.nn.relu(layer(h))
        return self.head(h)
