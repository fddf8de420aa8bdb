"""Focal losses: cross-entropies that down-weight the examples a model already gets right.

The focal loss multiplies the cross-entropy of each prediction by `(1 - p_t)^gamma`,
`p_t` the probability the model gives the target, so that the many easy predictions
(the background boxes of a dense detector) stop drowning the few hard ones; `gamma = 0`
is the plain cross-entropy. Lin et al., "Focal Loss for Dense Object Detection", ICCV
2017 (RetinaNet), https://arxiv.org/abs/1708.02002, Section 3.
"""

import math
import numbers

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, Real


def check_focal_parameters(alpha: object, gamma: object, *, prefix: str = "") -> None:
    """Raises a ValueError unless `alpha` is None or in [0, 1] and `gamma` is finite and >= 0.

    Arguments:
        alpha: the balancing weight of the positive class (None for no balancing).
        gamma: the focusing exponent.
        prefix: prepended to the argument names in the message (e.g. `"focal_"` for a
            task's fields).
    """
    if alpha is not None and not (_is_number(alpha) and 0.0 <= alpha <= 1.0):
        raise ValueError(
            f"`{prefix}alpha` must be None (no balancing) or a number in [0, 1]. Received: {alpha!r}."
        )
    if not (_is_number(gamma) and math.isfinite(gamma) and gamma >= 0.0):
        raise ValueError(f"`{prefix}gamma` must be a finite number >= 0. Received: {gamma!r}.")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_same_shape(logits: Array, targets: Array, targets_name: str) -> None:
    if targets.shape != logits.shape:
        raise ValueError(
            f"`{targets_name}` must have the shape of `logits`, {tuple(logits.shape)}: no "
            f"broadcasting between targets and predictions. Received: shape {tuple(targets.shape)}."
        )


def sigmoid_focal_loss(
    logits: Float[Array, "*shape"],
    targets: Real[Array, "*shape"],
    *,
    alpha: float | int | None = 0.25,
    gamma: float | int = 2.0,
) -> Float[Array, "*shape"]:
    """The sigmoid focal loss of every logit, an independent binary prediction each.

    `FL = -alpha_t (1 - p_t)^gamma log(p_t)` with `p = sigmoid(logit)`, `p_t = p` and
    `alpha_t = alpha` for a positive target, `1 - p` and `1 - alpha` for a negative one
    (soft targets in [0, 1] interpolate). This is `optax.losses.sigmoid_focal_loss`,
    computed in log space (finite values and gradients for any logit), with RetinaNet's
    default `alpha = 0.25` and checked arguments.

    Reference: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017,
    https://arxiv.org/abs/1708.02002, Eq. (5).

    Arguments:
        logits: any shape.
        targets: binary (or soft) targets in [0, 1], the shape of `logits`; integer
            or floating.
        alpha: weight of the positive targets in [0, 1] (the negatives weigh
            `1 - alpha`); None weighs both 1.
        gamma: the focusing exponent, >= 0; 0 gives the (alpha-weighted) sigmoid
            cross-entropy.

    Returns:
        The loss of every element, the shape and dtype of `logits`.
    """
    check_focal_parameters(alpha, gamma)
    _check_same_shape(logits, targets, "targets")
    return optax.losses.sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma)


def softmax_focal_loss(
    logits: Float[Array, "*batch num_classes"],
    targets: Float[Array, "*batch num_classes"],
    *,
    gamma: float | int = 2.0,
    alpha: Float[Array, " num_classes"] | None = None,
) -> Float[Array, " *batch"]:
    """The softmax focal loss of every prediction over mutually exclusive classes.

    `FL = -(1 - p_t)^gamma sum_c alpha_c y_c log p_c` with `p = softmax(logits)` and
    `p_t = sum_c y_c p_c`, the probability of the target class (of the target
    distribution, for smoothed or soft targets). The weight `(1 - p_t)^gamma` is
    computed in log space, `log(1 - p_t) = logsumexp_c(log p_c, b=1 - y_c)` (the
    probabilities sum to 1), so that it and its gradient stay finite for any logits.

    Reference: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017,
    https://arxiv.org/abs/1708.02002 (the loss of Eq. (5) with a softmax, as Section 3
    notes it extends to several classes).

    Arguments:
        logits: `[..., num_classes]`.
        targets: one-hot (or smoothed, or soft) targets in [0, 1], the shape of
            `logits`.
        gamma: the focusing exponent, >= 0; 0 gives the softmax cross-entropy.
        alpha: optional per-class weights `[num_classes]` (the alpha-balanced form);
            None weighs every class 1.

    Returns:
        The loss of every prediction `[...]`, in the dtype of `logits`.
    """
    check_focal_parameters(None, gamma)
    _check_same_shape(logits, targets, "targets")
    targets = targets.astype(logits.dtype)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    weighted_targets = (
        targets if alpha is None else targets * jnp.broadcast_to(alpha.astype(logits.dtype), targets.shape)
    )
    cross_entropy = -jnp.sum(weighted_targets * log_probs, axis=-1)
    if gamma == 0:
        # 0^0 = 1, but exp(0 * log 0) is NaN: a certain prediction keeps its weight 1.
        return cross_entropy
    log_one_minus_p_t = logsumexp(log_probs, axis=-1, b=1.0 - targets)
    return jnp.exp(gamma * log_one_minus_p_t) * cross_entropy
