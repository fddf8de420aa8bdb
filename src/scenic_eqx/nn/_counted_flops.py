"""FLOPs of one example's forward pass as XLA's cost analysis counts them, for any model.

`forward_flops` has a rule per library model family; a project's own model (a
TokenLearner ViT, a multimodal bottleneck transformer) has none. This counts the
compiled program instead, in the same convention (2 FLOPs per multiply-add, 1 per
elementwise op, transcendentals apart), so the two agree on the library's models.
The model must not scan its blocks (XLA counts a scanned body once).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from ._conv2d import as_convolutions

# The cost analysis reads the program before the backend's optimisations: turning them
# off changes no count and compiles much faster.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _example_spec(example) -> PyTree[jax.ShapeDtypeStruct]:
    """A float32 `ShapeDtypeStruct` for a shape tuple; structs and arrays as they are."""
    if isinstance(example, tuple) and all(isinstance(d, int) for d in example):
        return jax.ShapeDtypeStruct(example, jnp.float32)
    is_leaf = lambda x: isinstance(x, jax.ShapeDtypeStruct) or eqx.is_array(x)  # noqa: E731
    leaves = jax.tree.leaves(example, is_leaf=is_leaf)
    if not leaves or not all(is_leaf(x) for x in leaves):
        raise TypeError(
            "`example` must be the shape of one example (a tuple of ints) or a pytree of arrays "
            f"or `jax.ShapeDtypeStruct`s (e.g. a dict of modalities). Received: {example!r}."
        )
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), example, is_leaf=is_leaf)


def counted_forward_flops(model: eqx.Module, example) -> float:
    """FLOPs of one example's forward pass through `model`, counted by XLA's cost analysis.

    The pass is counted in inference mode: dropout and stochastic depth, which
    `forward_flops` does not count either, are off. Nothing runs: the model may hold
    `jax.ShapeDtypeStruct`s (from `eqx.filter_eval_shape`) instead of arrays.

    Arguments:
        model: a model acting on one example; its blocks must not be scanned.
        example: the shape of one example without a batch axis (float32 input), or a
            pytree of arrays or `jax.ShapeDtypeStruct`s (e.g. `{"rgb": ..., "spectrogram": ...}`).

    Returns:
        The FLOPs, a float.
    """
    spec = _example_spec(example)
    is_leaf = lambda x: isinstance(x, jax.ShapeDtypeStruct) or eqx.is_array(x)  # noqa: E731
    # The parameters are arguments: closed over as constants, XLA would fold away the
    # adds of zero biases and the products with unit scales of a fresh model.
    params, static = eqx.partition(eqx.nn.inference_mode(model), is_leaf)

    def forward(params, inputs):
        return eqx.combine(params, static)(inputs)

    with as_convolutions():  # the model's arithmetic, not the CPU formulation's fusions
        compiled = jax.jit(forward).lower(params, spec).compile(_FAST_COMPILE)
    return float(compiled.cost_analysis()["flops"])
