"""The transformer MLP block: `Linear -> GELU -> Dropout -> Linear -> Dropout`."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._linear import dense, linear


def gelu(x: Array, approximate: bool = False) -> Array:
    """GELU (Hendrycks & Gimpel 2016): `x * Phi(x)`, or its tanh approximation.

    The exact form is written with `erf`: `jax.nn.gelu(approximate=False)` goes through
    `erfc`, about 2.5x slower on CPU (docs/performance.md, "Exact GELU"). Google's
    checkpoints were trained with the tanh form, timm's and transformers' with the exact
    one.
    """
    if approximate:
        return jax.nn.gelu(x, approximate=True)
    return x * (0.5 + 0.5 * jax.lax.erf(x * jnp.asarray(1 / math.sqrt(2), x.dtype)))


def quick_gelu(x: Array) -> Array:
    """`x * sigmoid(1.702 x)`: the GELU approximation OpenAI's CLIP was trained with.

    Radford et al. 2021 ("Learning Transferable Visual Models From Natural Language
    Supervision"); the constant is from Hendrycks & Gimpel 2016, section 2.
    """
    return x * jax.nn.sigmoid(jnp.asarray(1.702, x.dtype) * x)


class MlpBlock(eqx.Module):
    """Two dense layers with a GELU between, as in the transformer encoder block.

    Arguments:
        dim: size of the input and output.
        mlp_dim: size of the hidden layer.
        dropout_rate: dropout after the activation and after the output layer.
        gelu_approximate: `True` for the tanh approximation of GELU (Google's
            checkpoints), `False` for the exact one (timm, transformers).
        quick_gelu: `x * sigmoid(1.702 x)` instead of GELU (OpenAI's CLIP); then
            `gelu_approximate` is unused.
        key: PRNG key for initialisation (keyword only).
    """

    dense1: eqx.nn.Linear
    dense2: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    gelu_approximate: bool = eqx.field(static=True)
    quick_gelu: bool = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        mlp_dim: int,
        *,
        dropout_rate: float = 0.0,
        gelu_approximate: bool = False,
        quick_gelu: bool = False,
        key: PRNGKeyArray,
    ):
        keys = jax.random.split(key, 4)
        # Google's ViT initialisation: Xavier-uniform weights, tiny normal biases.
        xavier = jax.nn.initializers.xavier_uniform()
        bias = jax.nn.initializers.normal(1e-6)
        self.dense1 = linear(xavier(keys[0], (mlp_dim, dim)), bias(keys[1], (mlp_dim,)))
        self.dense2 = linear(xavier(keys[2], (dim, mlp_dim)), bias(keys[3], (dim,)))
        self.dropout = eqx.nn.Dropout(dropout_rate)
        self.gelu_approximate = gelu_approximate
        self.quick_gelu = quick_gelu

    def __call__(
        self, x: Float[Array, "tokens dim"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "tokens dim"]:
        """Applies the block to each token (row) of `x`; `key` drives dropout."""
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        h = dense(self.dense1, x)
        h = quick_gelu(h) if self.quick_gelu else gelu(h, self.gelu_approximate)
        h = self.dropout(h, key=k1)
        return self.dropout(dense(self.dense2, h), key=k2)
