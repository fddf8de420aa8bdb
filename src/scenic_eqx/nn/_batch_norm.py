"""Batch normalisation whose statistics are float32 whatever the input's precision, and
its frozen form (running statistics in training too, never updated)."""

from collections.abc import Hashable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._statistics_dtype import statistics_dtype


class BatchNorm(eqx.nn.BatchNorm):
    """`eqx.nn.BatchNorm(mode="batch")` that normalises half-precision inputs in float32.

    Training normalises with the statistics of the batch (the `axis_name` vmap axis) and
    updates running averages `running = momentum * running + (1 - momentum) * batch`,
    which inference (`eqx.nn.inference_mode`) uses, divided by `1 - momentum**count`
    (Equinox's zero-debiasing). On a bfloat16 input (mixed precision) Equinox's layer
    takes the mean and variance in bfloat16: activations around 100 with unit spread get
    a mean rounded to a step of 0.5, which shifts every output by up to a quarter of a
    standard deviation; and in inference its float32 statistics promote the output to
    float32. This one computes statistics and normalisation in float32 (as Flax and
    Keras do under mixed precision), keeps the running statistics in their own dtype
    (float32) and returns the input's dtype. On float32 inputs its statistics are
    Equinox's to the bit, and its outputs Equinox's up to float32 rounding: it scales
    `x - mean` by one per-channel factor `weight / sqrt(var + eps)`, as Flax does, where
    Equinox divides by the standard deviation and then multiplies by `weight`. The
    backward pass then keeps `x - mean` alone rather than also its quotient by the
    standard deviation: 23% less temporary memory in a ResNet-50 training step
    (benchmarks/compile_memory.py).

    A frozen BatchNorm (`frozen=True`, or `freeze_batch_norm(model)`) normalises with
    its running statistics in training as well and never updates them: in training it
    computes exactly what inference does (DETR's `FrozenBatchNorm2d`, Carion et al.
    2020, for a backbone whose ImageNet statistics a detection batch of a few images
    would only spoil). Its scale and shift are still parameters: freeze them in the
    optimizer (`loops.freeze`, the config's `frozen_parameters`) to fix them too, as
    DETR does.

    A subclass rather than a wrapper: it keeps Equinox's parameter and state layout
    (`weight`, `bias`, `batch_state_index` holding `(mean, var)`, `batch_counter`), which
    weight import and checkpoints address by path, and `isinstance(x, eqx.nn.BatchNorm)`.

    Arguments:
        channels: channels of the input (its first axis).
        axis_name: name of the `vmap` axis the batch statistics are taken over.
        eps: added to the variance.
        momentum: weight of the old running statistics in each update (torch's
            `momentum=0.1` is `momentum=0.9` here).
        frozen: normalise with the running statistics in training too, and never
            update them.

    Reference: Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network
    Training by Reducing Internal Covariate Shift", https://arxiv.org/abs/1502.03167.
    """

    frozen: bool

    def __init__(
        self,
        channels: int,
        axis_name: Hashable = "batch",
        *,
        eps: float = 1e-5,
        momentum: float = 0.9,
        frozen: bool = False,
    ):
        if not 0 < momentum < 1:
            raise ValueError(f"`momentum` (={momentum}) must be in (0, 1)")
        super().__init__(channels, axis_name, eps=eps, momentum=momentum, mode="batch")
        self.frozen = frozen

    def __call__(
        self,
        x: Float[Array, "channels *spatial"],
        state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
        inference: bool | None = None,
    ) -> tuple[Float[Array, "channels *spatial"], eqx.nn.State]:
        """Normalises one example `x` (channels first); must run under `vmap` with
        `axis_name` in training.

        Arguments:
            x: the input, channels on the first axis.
            state: the model's state, holding the running statistics.
            key: unused.
            inference: overrides `self.inference` when given.

        Returns:
            `(y, state)`: `y` of `x`'s shape and dtype, and the updated state (unchanged
            in inference, and when frozen).
        """
        del key
        inference = self.frozen or (self.inference if inference is None else inference)
        compute = statistics_dtype(x.dtype)
        xf = x.astype(compute)
        counter = state.get(self.batch_counter)
        running_mean, running_var = state.get(self.batch_state_index)
        if inference:
            # The counter is an int32: a float power of it, explicitly (strict promotion).
            scale = jnp.where(counter == 0, 1.0, 1.0 - self.momentum ** counter.astype(running_mean.dtype))
            mean = (running_mean / scale).astype(compute)
            var = (running_var / scale).astype(compute)
        else:
            # The same operations, in the same order, as `eqx.nn.BatchNorm`: float32
            # inputs give its statistics to the bit.
            mean, var = jax.vmap(self._stats)(xf)
            state = state.set(self.batch_counter, counter + 1)
            new_mean = running_mean * self.momentum + mean * (1 - self.momentum)
            new_var = running_var * self.momentum + var * (1 - self.momentum)
            statistics = (new_mean.astype(running_mean.dtype), new_var.astype(running_var.dtype))
            state = state.set(self.batch_state_index, statistics)
        weight, bias = self.weight.astype(compute), self.bias.astype(compute)
        out = jax.vmap(self._normalise)(xf, mean, var, weight, bias)
        return out.astype(x.dtype), state

    def _stats(self, y: Array) -> tuple[Array, Array]:
        """Mean and (biased) variance of one channel over the example and the batch."""
        mean = jax.lax.pmean(jnp.mean(y), self.axis_name)
        var = jax.lax.pmean(jnp.mean((y - mean) * (y - mean)), self.axis_name)
        return mean, jnp.maximum(0.0, var)

    def _normalise(self, y: Array, mean: Array, var: Array, weight: Array, bias: Array) -> Array:
        return (y - mean) * (jax.lax.rsqrt(var + self.eps) * weight) + bias


def freeze_batch_norm(model: PyTree) -> PyTree:
    """`model` with every `BatchNorm` in it frozen (see `BatchNorm`'s `frozen`).

    Arguments:
        model: a module (or any pytree) holding `nn.BatchNorm` layers, e.g. a `ResNet`.

    Returns:
        The same model whose BatchNorm layers normalise with their running statistics
        in training too and never update them; the state (`eqx.nn.State(model)`) is
        unchanged.
    """
    is_norm = lambda x: isinstance(x, BatchNorm)  # noqa: E731
    if not any(is_norm(x) for x in jax.tree.leaves(model, is_leaf=is_norm)):
        raise ValueError(
            "`model` must hold at least one `nn.BatchNorm` to freeze. "
            f"Received: a {type(model).__name__} without one."
        )

    def flags(tree):
        return [x.frozen for x in jax.tree.leaves(tree, is_leaf=is_norm) if is_norm(x)]

    return eqx.tree_at(flags, model, replace_fn=lambda _: True)
