"""Linear classifiers on frozen features: closed-form ridge regression and logistic regression.

Both standardise the features first, with the training features' mean and standard deviation
(as big_vision's few-shot evaluator does), so that one regularisation strength suits
representations of any scale, and both leave the bias unregularised.
"""

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class LinearClassifier:
    """`logits = ((x - mean) / scale) @ weights + bias`: a linear map of standardised features.

    Fields:
        mean: `[dim]`, the training features' mean.
        scale: `[dim]`, their standard deviation (1 where a feature is constant).
        weights: `[dim, classes]`, acting on the standardised features.
        bias: `[classes]`.
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    def logits(self, features: np.ndarray) -> np.ndarray:
        """`[examples, classes]` logits of `features` `[examples, dim]`."""
        return ((np.asarray(features) - self.mean) / self.scale) @ self.weights + self.bias

    def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float:
        """The fraction of `labels` `[examples]` that are the argmax of the logits."""
        return float(np.mean(np.argmax(self.logits(features), axis=-1) == np.asarray(labels)))


def _standardization(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of each feature; a constant feature is centred only (scale 1), as in
    scikit-learn's `StandardScaler`."""
    mean, std = features.mean(axis=0), features.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def _checked(features: object, labels: object, num_classes: object, l2_reg: object):
    """`features` as float64 `[examples, dim]` and `labels` `[examples]`, after checking
    them and the hyperparameters."""
    x, labels = np.asarray(features, np.float64), np.asarray(labels)
    if x.ndim != 2 or labels.shape != x.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            "`features` must be `[examples, dim]` and `labels` integer class indices `[examples]`. "
            f"Received: features of shape {x.shape}, labels of shape {labels.shape} and dtype {labels.dtype}."
        )
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer. Received: {num_classes!r}.")
    if isinstance(l2_reg, bool) or not isinstance(l2_reg, int | float) or not l2_reg > 0:
        raise ValueError(f"`l2_reg` must be a positive number. Received: {l2_reg!r}.")
    check_labels_in_range(labels, num_classes, "labels")
    return x, labels


def check_labels_in_range(labels: np.ndarray, num_classes: int, name: str) -> None:
    """Raises unless every label is a class index in `[0, num_classes)`."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"`{name}` must hold class indices in [0, {num_classes}) (`num_classes`={num_classes}). "
            f"Received: labels from {labels.min()} to {labels.max()}."
        )


def fit_ridge_classifier(
    features: np.ndarray, labels: np.ndarray, *, num_classes: int, l2_reg: float
) -> LinearClassifier:
    """Least squares onto one-hot targets in {-1, +1}, with an L2 penalty, in closed form.

    Minimises `||X W + 1 b^T - Y||^2 + l2_reg ||W||^2` over `W` and `b`, where `X` holds
    the standardised features and `Y` is `2 * one_hot(labels) - 1`: the few-shot linear
    regression of big_vision (Kolesnikov et al. 2020, "Big Transfer (BiT)", ECCV 2020).
    Here the bias is exactly unregularised (big_vision appends a constant feature of 100,
    which comes close), so the weights equal scikit-learn's `Ridge(alpha=l2_reg)` fitted
    on the standardised features. The normal equations are solved in float64 on the host,
    in the smaller of their two forms: `(X^T X + l2_reg I)^-1 X^T Y` when there are at
    least as many examples as features, `X^T (X X^T + l2_reg I)^-1 Y` otherwise.

    Arguments:
        features: `[examples, dim]`.
        labels: `[examples]` class indices in `[0, num_classes)`.
        num_classes: the number of classes (the columns of `Y`).
        l2_reg: the penalty on the weights, positive.

    Returns:
        The fitted `LinearClassifier`.
    """
    x, labels = _checked(features, labels, num_classes, l2_reg)
    mean, scale = _standardization(x)
    x = (x - mean) / scale
    targets = 2.0 * np.eye(num_classes)[labels] - 1.0
    # Centring both sides leaves the bias out of the penalty.
    x_mean, target_mean = x.mean(axis=0), targets.mean(axis=0)
    x, targets = x - x_mean, targets - target_mean
    examples, dim = x.shape
    if examples >= dim:
        weights = np.linalg.solve(x.T @ x + l2_reg * np.eye(dim), x.T @ targets)
    else:
        weights = x.T @ np.linalg.solve(x @ x.T + l2_reg * np.eye(examples), targets)
    return LinearClassifier(mean, scale, weights, target_mean - x_mean @ weights)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _minimise_logistic_loss(x, labels, l2_reg, tolerance, max_steps, *, num_classes):
    def objective(params):
        logits = x @ params["weights"] + params["bias"][None]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss + 0.5 * l2_reg * jnp.sum(params["weights"] ** 2)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry):
        params, state, count, _ = carry
        value, grad = value_and_grad(params, state=state)
        # optax's line search mixes Python floats with int32 counters: standard promotion.
        with jax.numpy_dtype_promotion("standard"):
            updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=objective)
        grad_norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grad)))
        return optax.apply_updates(params, updates), state, count + 1, grad_norm

    def not_converged(carry):
        _, _, count, grad_norm = carry
        return (count < max_steps) & (grad_norm > tolerance)

    params = {
        "weights": jnp.zeros((x.shape[1], num_classes), jnp.float32),
        "bias": jnp.zeros((num_classes,), jnp.float32),
    }
    with jax.numpy_dtype_promotion("standard"):
        state = solver.init(params)
    carry = (params, state, jnp.zeros((), jnp.int32), jnp.full((), jnp.inf, jnp.float32))
    params, _, count, grad_norm = jax.lax.while_loop(not_converged, step, carry)
    return params, count, grad_norm


def fit_logistic_regression(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    l2_reg: float,
    max_steps: int = 1000,
    tolerance: float = 1e-6,
) -> tuple[LinearClassifier, int]:
    """Multinomial logistic regression with an L2 penalty, by full-batch L-BFGS.

    Minimises `mean_i cross_entropy(x_i W + b, y_i) + l2_reg / 2 * ||W||^2` on the
    standardised features, with `optax.lbfgs` (zoom line search) in float32 on the
    default device, from zero, until the gradient's L2 norm is at most `tolerance` or
    after `max_steps` steps. The objective is smooth and strongly convex in `W`, so its
    minimum is unique and L-BFGS reaches it without a learning rate to tune; it is the
    minimum of scikit-learn's `LogisticRegression(C=1 / (l2_reg * examples))` (whose
    objective is `C * sum_i cross_entropy + ||W||^2 / 2`) on the same standardised
    features, with the bias unregularised as scikit-learn's L-BFGS solver leaves it.

    Arguments:
        features: `[examples, dim]`.
        labels: `[examples]` class indices in `[0, num_classes)`.
        num_classes: the number of classes.
        l2_reg: the penalty on the weights, positive.
        max_steps: the most L-BFGS steps.
        tolerance: stop once the gradient's L2 norm is at most this.

    Returns:
        `(classifier, steps)`: the fitted `LinearClassifier` and the L-BFGS steps taken. A
        `RuntimeWarning` says so when `max_steps` ran out before `tolerance` was reached.
    """
    x, labels = _checked(features, labels, num_classes, l2_reg)
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
        raise ValueError(f"`max_steps` must be a positive integer. Received: {max_steps!r}.")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance >= 0:
        raise ValueError(f"`tolerance` must be a non-negative number. Received: {tolerance!r}.")
    mean, scale = _standardization(x)
    params, count, grad_norm = _minimise_logistic_loss(
        jnp.asarray((x - mean) / scale, jnp.float32),
        jnp.asarray(labels, jnp.int32),
        jnp.asarray(l2_reg, jnp.float32),
        jnp.asarray(tolerance, jnp.float32),
        jnp.asarray(max_steps, jnp.int32),
        num_classes=num_classes,
    )
    count, grad_norm = int(count), float(grad_norm)
    if grad_norm > tolerance:
        warnings.warn(
            f"The linear probe did not converge in `max_steps` (={max_steps}) L-BFGS steps: the "
            f"gradient norm is {grad_norm:.3g}, above `tolerance` (={tolerance}).",
            RuntimeWarning,
            stacklevel=2,
        )
    weights, bias = (np.asarray(params[name], np.float64) for name in ("weights", "bias"))
    return LinearClassifier(mean, scale, weights, bias), count
