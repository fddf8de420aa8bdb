"""`eqx.nn.Linear` layers: built from given arrays, and applied to many rows at once."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def linear(weight: Array, bias: Array | None) -> eqx.nn.Linear:
    """An `eqx.nn.Linear` holding the given `[out, in]` weight and `[out]` bias.

    Built abstractly and then filled, which skips `eqx.nn.Linear`'s own random
    initialisation (each eager random op is a compilation).
    """
    out_features, in_features = weight.shape
    abstract = eqx.filter_eval_shape(
        eqx.nn.Linear,
        in_features,
        out_features,
        use_bias=bias is not None,
        key=jax.random.key(0),
    )
    if bias is None:
        return eqx.tree_at(lambda lin: lin.weight, abstract, weight)
    return eqx.tree_at(lambda lin: (lin.weight, lin.bias), abstract, (weight, bias))


def dense(layer: eqx.nn.Linear, x: Float[Array, "rows in_features"]) -> Float[Array, "rows out_features"]:
    """`layer` applied to every row of `x`: `x @ weight.T + bias`, one matrix product.

    The same numbers as `jax.vmap(layer)(x)`, but XLA:CPU runs the training step of a ViT
    about 7% faster with it: the per-row form (`weight @ row`), batched again by the
    model's own `vmap`, makes XLA transpose the activations before each weight gradient
    (a copy of `[hidden, batch * tokens]` per layer); the row-major product needs none.
    """
    y = jnp.matmul(x, layer.weight.T)
    if layer.bias is None:
        return y
    return y + layer.bias.astype(y.dtype)[None]
