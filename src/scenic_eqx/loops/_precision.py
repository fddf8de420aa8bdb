"""Mixed precision: which dtype the parameters are kept in, computed in, and output in."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree


@dataclasses.dataclass(frozen=True)
class Precision:
    """A mixed-precision policy (Micikevicius et al. 2018; Keras' `mixed_bfloat16`).

    The trainer keeps the parameters, their gradients and the optimizer state in
    `param_dtype`; each step casts the parameters and the floating-point inputs to
    `compute_dtype` and the model's floating-point outputs to `output_dtype`, so losses
    and metrics are computed in float32. The models keep their own statistics in float32
    whatever the compute dtype (normalisation statistics, softmax, BatchNorm's running
    averages in the model state, which is never cast).

    Fields:
        name: the name `get_precision` knows the policy by.
        param_dtype: dtype of the master parameters, gradients and optimizer state.
        compute_dtype: dtype of the parameters and inputs inside the model.
        output_dtype: dtype of the outputs handed to the task.
    """

    name: str
    param_dtype: jnp.dtype
    compute_dtype: jnp.dtype
    output_dtype: jnp.dtype

    @property
    def is_mixed(self) -> bool:
        return self.compute_dtype != self.param_dtype

    def cast_to_compute(self, tree: PyTree) -> PyTree:
        """`tree` with every floating-point array in `compute_dtype`."""
        return _cast_floating(tree, self.compute_dtype)

    def cast_to_output(self, tree: PyTree) -> PyTree:
        """`tree` with every floating-point array in `output_dtype`."""
        return _cast_floating(tree, self.output_dtype)


def _cast_floating(tree: PyTree, dtype) -> PyTree:
    def cast(x):
        if eqx.is_array(x) and jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != dtype:
            return x.astype(dtype)
        return x

    return jax.tree.map(cast, tree)


PRECISIONS: dict[str, Precision] = {
    "float32": Precision("float32", *map(jnp.dtype, ("float32", "float32", "float32"))),
    "bfloat16": Precision("bfloat16", *map(jnp.dtype, ("float32", "bfloat16", "float32"))),
}


def get_precision(precision: str | Precision) -> Precision:
    """The policy named `precision` (`"float32"` or `"bfloat16"`), or `precision` itself."""
    if isinstance(precision, Precision):
        return precision
    if precision not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {', '.join(map(repr, PRECISIONS))} or a "
            f"`loops.Precision`. Received: {precision!r}."
        )
    return PRECISIONS[precision]
