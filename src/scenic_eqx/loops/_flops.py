"""Model FLOPs of a training step, from the model family's analytic count."""

import jax
import numpy as np
from jaxtyping import PyTree

from .. import nn

# Forward, then backward with respect to activations and to weights, each about as
# costly as the forward pass (Kaplan et al. 2020; Chowdhery et al. 2022, Appendix B).
TRAINING_FLOPS_PER_FORWARD = 3


def training_flops_per_example(model, batch: PyTree) -> float | None:
    """Model FLOPs of one example's training step, or `None` when they are unknown.

    The count is analytic (`nn.forward_flops`), not XLA's cost analysis, which counts a
    scanned layer once. `None` for a model family without a FLOPs rule, or for inputs
    that are not one array.

    Arguments:
        model: the one-example model.
        batch: a batch whose `inputs` array has a leading batch axis.
    """
    inputs = batch["inputs"]
    if not isinstance(inputs, jax.Array | np.ndarray):
        return None
    try:
        forward = nn.forward_flops(model, tuple(inputs.shape[1:]))
    except (TypeError, ValueError):  # no rule for the family, or inputs it does not read
        return None
    return float(TRAINING_FLOPS_PER_FORWARD * forward)
