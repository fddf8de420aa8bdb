"""A saturating power law of error against compute, fitted on the compute-efficient frontier.

E(C) = E_inf + A (C / C_unit)^-alpha: the error E falls as a power of the training
compute C towards an irreducible E_inf (Kaplan et al. 2020, "Scaling Laws for Neural
Language Models", arXiv:2001.08361; with the offset, Zhai et al. 2022, "Scaling Vision
Transformers", CVPR, arXiv:2106.04560). `C_unit` (1e12 FLOPs by default) only fixes the
unit in which `A` is read: A is the excess error over E_inf at C = C_unit.
"""

import dataclasses
import math
import warnings

import numpy as np
from jaxtyping import Bool, Float
from scipy.optimize import OptimizeWarning, curve_fit

NUM_PARAMETERS = 3  # E_inf, A, alpha


def saturating_power_law(
    compute: Float[np.ndarray, " points"], e_inf: float, a: float, alpha: float
) -> Float[np.ndarray, " points"]:
    """E_inf + A * compute^-alpha, with `compute` in units of `C_unit`."""
    return e_inf + a * np.power(compute, -alpha)


def compute_efficient_frontier(
    compute: Float[np.ndarray, " points"], error: Float[np.ndarray, " points"]
) -> Bool[np.ndarray, " points"]:
    """Which points lie on the compute-efficient frontier: a lower error than every point of
    less compute (ties in compute: the lowest error among them, once).

    Arguments:
        compute: the training compute of each point.
        error: the error of each point.

    Returns:
        A boolean mask over the points.
    """
    compute, error = np.asarray(compute, float), np.asarray(error, float)
    if compute.shape != error.shape or compute.ndim != 1:
        raise ValueError(
            f"`compute` and `error` must be 1-D arrays of one length. Received shapes "
            f"{compute.shape} and {error.shape}."
        )
    on_frontier = np.zeros(compute.shape, bool)
    best = math.inf
    for index in np.lexsort((error, compute)):  # by compute, then error
        if error[index] < best:
            on_frontier[index], best = True, error[index]
    return on_frontier


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """The fitted E_inf, A, alpha and their standard errors (`inf` when not estimable)."""

    e_inf: float
    a: float
    alpha: float
    e_inf_std: float
    a_std: float
    alpha_std: float
    compute_unit: float
    num_points: int

    def __call__(self, compute: Float[np.ndarray, " points"]) -> Float[np.ndarray, " points"]:
        """The fitted error at `compute` (in FLOPs, not units)."""
        return saturating_power_law(
            np.asarray(compute, float) / self.compute_unit, self.e_inf, self.a, self.alpha
        )


def fit_power_law(
    compute: Float[np.ndarray, " points"],
    error: Float[np.ndarray, " points"],
    *,
    error_std: Float[np.ndarray, " points"] | None = None,
    compute_unit: float = 1e12,
) -> PowerLawFit:
    """Least-squares fit of E(C) = E_inf + A (C / compute_unit)^-alpha by `scipy.optimize.curve_fit`.

    The bounds keep the law meaningful: 0 <= E_inf <= min(error), A >= 0, 0 <= alpha <= 5.
    The standard errors are the square roots of the covariance's diagonal, scaled by the
    residuals (`absolute_sigma=False`), so they grow when the law fits the points badly.

    Arguments:
        compute: training FLOPs of each point, positive.
        error: error of each point, in [0, 1].
        error_std: each point's standard error (weights the residuals), e.g. the binomial
            sqrt(E (1 - E) / n) of a test error on n examples; `None`: equal weights.
        compute_unit: the FLOPs that `A` refers to.

    Returns:
        The `PowerLawFit`.

    Raises:
        ValueError: fewer than 4 points, non-positive compute, or arrays of different
            shapes.
    """
    compute, error = np.asarray(compute, float), np.asarray(error, float)
    if compute.shape != error.shape or compute.ndim != 1:
        raise ValueError(
            f"`compute` and `error` must be 1-D arrays of one length. Received shapes "
            f"{compute.shape} and {error.shape}."
        )
    if compute.size <= NUM_PARAMETERS:
        raise ValueError(
            f"Fitting E_inf, A and alpha needs at least {NUM_PARAMETERS + 1} points. "
            f"Received: {compute.size}."
        )
    if not np.all(compute > 0) or not np.all(np.isfinite(compute)):
        raise ValueError(f"`compute` must be positive and finite. Received: {compute.tolist()}.")
    if error_std is not None:
        error_std = np.asarray(error_std, float)
        if error_std.shape != error.shape or not np.all(error_std > 0):
            raise ValueError(
                f"`error_std` must be positive, one per point ({error.shape}). Received: {error_std!r}."
            )
    x = compute / compute_unit
    floor = float(error.min())
    # A start inside the bounds: half the best error as E_inf, alpha 0.3, and A through
    # the middle point.
    e_inf0, alpha0 = 0.5 * floor, 0.3
    middle = np.argsort(x)[x.size // 2]
    a0 = max(error[middle] - e_inf0, 1e-6) * x[middle] ** alpha0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OptimizeWarning)
        params, covariance = curve_fit(
            saturating_power_law, x, error, p0=(e_inf0, a0, alpha0), sigma=error_std,
            bounds=((0.0, 0.0, 0.0), (max(floor, 1e-12), np.inf, 5.0)), maxfev=20_000,
        )  # fmt: skip
    for warning in caught:  # only the covariance warning is handled here; the rest goes on
        if not issubclass(warning.category, OptimizeWarning):
            warnings.warn(warning.message, warning.category, stacklevel=2)
    if any(issubclass(w.category, OptimizeWarning) for w in caught) or not np.all(np.isfinite(covariance)):
        stds = (math.inf,) * NUM_PARAMETERS  # the covariance could not be estimated
    else:
        stds = tuple(float(s) for s in np.sqrt(np.diag(covariance)))
    e_inf, a, alpha = (float(p) for p in params)
    return PowerLawFit(e_inf, a, alpha, *stds, compute_unit=compute_unit, num_points=int(compute.size))
