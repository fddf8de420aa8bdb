"""The phases every learning-rate schedule shares: a linear warmup before its decay, and
an optional linear cooldown to 0 at its end.

Warmup rises linearly from `warmup_start_value` at step 0 to `base_learning_rate` at
step `warmup_steps` (Goyal et al. 2017, https://arxiv.org/abs/1706.02677, Section 2.2;
Scenic's `linear_warmup` with `warmup_alpha`). The cooldown multiplies the schedule by
`min(1, (num_steps - step) / cooldown_steps)`, clipped at 0: the rate falls linearly to
0 over the last `cooldown_steps` steps, as big_vision's and Scenic's `linear_cooldown`
(Zhai et al. 2022, "Scaling Vision Transformers", https://arxiv.org/abs/2106.04560).
"""

import math
import numbers

import jax.numpy as jnp
import optax


def check_non_negative(name: str, value: int) -> None:
    """Raises unless `value` is a non-negative number."""
    if value < 0:
        raise ValueError(f"`{name}` (={value}) must be non-negative")


def check_phases(
    *,
    num_steps: int | None,
    warmup_steps: int,
    warmup_start_value: float,
    cooldown_steps: int,
) -> None:
    """Raises unless the warmup and the cooldown fit in `num_steps` (when it is known).

    A cooldown ends at `num_steps`, so it needs it; without a warmup,
    `warmup_start_value` would have no effect and is refused rather than ignored.
    """
    check_non_negative("warmup_steps", warmup_steps)
    check_non_negative("cooldown_steps", cooldown_steps)
    if (
        isinstance(warmup_start_value, bool)
        or not isinstance(warmup_start_value, numbers.Real)
        or not math.isfinite(warmup_start_value)
        or warmup_start_value < 0
    ):
        raise ValueError(
            f"`warmup_start_value` must be a finite non-negative learning rate. Received: {warmup_start_value!r}."
        )
    if warmup_start_value and not warmup_steps:
        raise ValueError(
            f"`warmup_start_value` (={warmup_start_value}) has no effect without a warmup: set "
            "`warmup_steps` too, or leave `warmup_start_value` at 0. Received: `warmup_steps`=0."
        )
    if num_steps is None:
        if cooldown_steps:
            raise ValueError(
                f"`cooldown_steps` (={cooldown_steps}) needs `num_steps`, the step at which the "
                "cooldown reaches 0. Received: `num_steps`=None."
            )
        return
    if num_steps <= 0:
        raise ValueError(f"`num_steps` (={num_steps}) must be positive")
    if warmup_steps > num_steps:
        raise ValueError(f"`warmup_steps` (={warmup_steps}) must not exceed `num_steps` (={num_steps})")
    if warmup_steps + cooldown_steps > num_steps:
        raise ValueError(
            f"`warmup_steps` (={warmup_steps}) plus `cooldown_steps` (={cooldown_steps}) must not "
            f"exceed `num_steps` (={num_steps})"
        )


def with_warmup_and_cooldown(
    after: optax.Schedule,
    *,
    base_learning_rate: float,
    warmup_steps: int,
    warmup_start_value: float = 0.0,
    cooldown_steps: int = 0,
    num_steps: int | None = None,
) -> optax.Schedule:
    """`after` (counted from the end of warmup), preceded by a linear warmup and
    followed by a linear cooldown.

    The step count is taken as float32 (exact up to 2**24 steps): optax's schedules mix
    it with Python floats, which strict dtype promotion refuses for an int32 count.

    Arguments:
        after: the schedule after warmup; it receives `step - warmup_steps`.
        base_learning_rate: the rate warmup reaches at `warmup_steps`.
        warmup_steps: steps of linear warmup (0: none).
        warmup_start_value: the rate at step 0 of the warmup.
        cooldown_steps: steps of linear cooldown to 0 at the end (0: none).
        num_steps: the step at which the cooldown reaches 0; needed for a cooldown.

    Returns:
        An `optax.Schedule` returning float32 rates.
    """
    check_phases(
        num_steps=num_steps,
        warmup_steps=warmup_steps,
        warmup_start_value=warmup_start_value,
        cooldown_steps=cooldown_steps,
    )
    joined = after
    if warmup_steps > 0:
        warmup = optax.linear_schedule(warmup_start_value, base_learning_rate, warmup_steps)
        joined = optax.join_schedules([warmup, after], [warmup_steps])
    cooldown = None
    if cooldown_steps > 0:
        # A factor of 1 until `num_steps - cooldown_steps`, then linearly down to 0.
        cooldown = optax.linear_schedule(1.0, 0.0, cooldown_steps, num_steps - cooldown_steps)

    def schedule(count):
        count = jnp.asarray(count, jnp.float32)
        # A float32 array even where `joined` is a constant (a Python float).
        rate = jnp.asarray(joined(count), jnp.float32)
        # Clipped at 0: under `jit` the factor can come out at -2e-8 at `num_steps` (XLA
        # divides by multiplying with the reciprocal), a negative learning rate.
        return rate if cooldown is None else rate * jnp.maximum(cooldown(count), 0.0)

    return schedule
