"""Piecewise-constant learning-rate schedules: a warmup, then a rate that changes at given steps.

Unlike the other schedules (`_schedules`), the boundaries count from the first update,
warmup included, as epochs do in the papers' recipes.
"""

import math
import numbers
from collections.abc import Sequence

import optax

from ._schedule_phases import check_non_negative, with_warmup_and_cooldown


def _check_boundaries(boundaries: tuple, warmup_steps: int) -> None:
    if not all(isinstance(b, int) and not isinstance(b, bool) for b in boundaries):
        raise ValueError(f"`boundaries` must be integer steps. Received: {boundaries!r}.")
    if any(later <= earlier for earlier, later in zip(boundaries, boundaries[1:])):
        raise ValueError(f"`boundaries` must be strictly increasing. Received: {boundaries!r}.")
    if boundaries and boundaries[0] < warmup_steps:
        raise ValueError(
            f"`boundaries` must not fall inside the warmup (`warmup_steps`={warmup_steps}). "
            f"Received: {boundaries!r}."
        )


def warmup_piecewise_constant(
    base_learning_rate: float,
    *,
    boundaries: Sequence[int],
    factors: Sequence[float],
    warmup_steps: int = 0,
    warmup_start_value: float = 0.0,
    cooldown_steps: int = 0,
    num_steps: int | None = None,
) -> optax.Schedule:
    """Linear warmup, then `base_learning_rate * factors[i]` from step `boundaries[i]` on.

    The factors are of the base rate, not of the previous piece (Scenic's
    `piecewise_constant` `decay_factors`; `optax.piecewise_constant_schedule` takes
    the ratios of consecutive pieces instead): `boundaries=(100, 200),
    factors=(0.5, 0.1)` gives `base` before step 100, `base/2` from 100 and `base/10`
    from 200. Each piece's rate is computed in double precision and rounded once to
    float32, and the pieces are joined by `optax.join_schedules`.

    Arguments:
        base_learning_rate: the rate after warmup and before the first boundary.
        boundaries: strictly increasing steps, counted from the first update (warmup
            included), each at least `warmup_steps`.
        factors: one non-negative factor of `base_learning_rate` per boundary.
        warmup_steps: steps of linear warmup (0: start at the base rate).
        warmup_start_value: the learning rate at step 0 of the warmup.
        cooldown_steps: steps of linear cooldown to 0 ending at `num_steps` (0: none).
        num_steps: total training steps; needed only for a cooldown.

    Returns:
        An `optax.Schedule`.
    """
    check_non_negative("warmup_steps", warmup_steps)
    boundaries, factors = tuple(boundaries), tuple(factors)
    _check_boundaries(boundaries, warmup_steps)
    if len(factors) != len(boundaries):
        raise ValueError(
            f"`factors` must have one entry per boundary ({len(boundaries)}). "
            f"Received: {len(factors)} factors, {factors!r}."
        )
    if not all(
        isinstance(f, numbers.Real) and not isinstance(f, bool) and math.isfinite(f) and f >= 0
        for f in factors
    ):
        raise ValueError(f"`factors` must be finite non-negative numbers. Received: {factors!r}.")
    pieces = [optax.constant_schedule(base_learning_rate * f) for f in (1.0, *factors)]
    # `join_schedules` counts from the end of warmup: the boundaries too.
    decay = optax.join_schedules(pieces, [b - warmup_steps for b in boundaries])
    return with_warmup_and_cooldown(
        decay,
        base_learning_rate=base_learning_rate,
        warmup_steps=warmup_steps,
        warmup_start_value=warmup_start_value,
        cooldown_steps=cooldown_steps,
        num_steps=num_steps,
    )


def warmup_step_decay(
    base_learning_rate: float,
    *,
    boundaries: Sequence[int],
    decay_factor: float = 0.1,
    warmup_steps: int = 0,
    warmup_start_value: float = 0.0,
    cooldown_steps: int = 0,
    num_steps: int | None = None,
) -> optax.Schedule:
    """Linear warmup, then a piecewise-constant rate multiplied by `decay_factor` at each boundary.

    From step `boundaries[i]` on (counted from the first update, warmup included) the
    rate is `base_learning_rate * decay_factor**(i + 1)`: `warmup_piecewise_constant`
    with those factors. The step schedule of He et al., "Deep Residual Learning for
    Image Recognition", CVPR 2016 (÷10 at epochs 30, 60 and 80 of 90 in Goyal et al.
    2017, https://arxiv.org/abs/1706.02677), and of DETR (Carion et al. 2020: ÷10 at
    epoch 200 of 300).

    Arguments:
        base_learning_rate: the rate after warmup and before the first boundary.
        boundaries: strictly increasing steps at which the rate is multiplied by
            `decay_factor`, each at least `warmup_steps`; e.g. `(200 * steps_per_epoch,)`.
        decay_factor: the factor applied at each boundary (0.1: divided by 10).
        warmup_steps: steps of linear warmup (0: start at the base rate).
        warmup_start_value: the learning rate at step 0 of the warmup.
        cooldown_steps: steps of linear cooldown to 0 ending at `num_steps` (0: none).
        num_steps: total training steps; needed only for a cooldown.

    Returns:
        An `optax.Schedule`.
    """
    check_non_negative("warmup_steps", warmup_steps)
    boundaries = tuple(boundaries)
    _check_boundaries(boundaries, warmup_steps)
    if not decay_factor > 0:
        raise ValueError(f"`decay_factor` (={decay_factor}) must be positive")
    return warmup_piecewise_constant(
        base_learning_rate,
        boundaries=boundaries,
        factors=[decay_factor ** (i + 1) for i in range(len(boundaries))],
        warmup_steps=warmup_steps,
        warmup_start_value=warmup_start_value,
        cooldown_steps=cooldown_steps,
        num_steps=num_steps,
    )
