"""Learning-rate schedules (warmup, a decay, an optional cooldown) and gradient clipping.

Every schedule maps the optimizer step (0 for the first update) to a learning rate and
is an ordinary `optax.Schedule`: pass it as `learning_rate=` to any optax optimizer.
Each is built from optax's own schedules and shares three phases (`_schedule_phases`):

- warmup: linear from `warmup_start_value` (default 0) at step 0 to
  `base_learning_rate` at step `warmup_steps`, as in Scenic and big_vision;
- the decay, counted from the end of warmup (the piecewise schedules of
  `_piecewise_schedules` count their boundaries from the first update);
- cooldown: the rate times `min(1, (num_steps - step) / cooldown_steps)`, falling
  linearly to 0 over the last `cooldown_steps` steps (big_vision's "linear cooldown").
"""

import math
import numbers

import jax.numpy as jnp
import optax

from ._schedule_phases import check_non_negative, check_phases, with_warmup_and_cooldown


def _polynomial_decay(base: float, end: float, power: float, decay_steps: int) -> optax.Schedule:
    """`end + (base - end) * (1 - t / decay_steps) ** power`, `t` clipped to `[0, decay_steps]`.

    The fraction left, `1 - t / decay_steps`, is `optax.linear_schedule`'s, clipped at 0.
    Not `optax.polynomial_schedule`: under `jit` XLA computes `t / decay_steps` as
    `t * (1 / decay_steps)`, which exceeds 1 at `t = decay_steps` (by 2e-8 for 45
    steps), so the fraction is slightly negative at the last step and a non-integer
    power of it is NaN.
    """
    remaining = optax.linear_schedule(1.0, 0.0, decay_steps)
    return lambda count: end + (base - end) * jnp.maximum(remaining(count), 0.0) ** power


def _decay_or_end(decay_steps: int, end_learning_rate: float, make_decay) -> optax.Schedule:
    """`make_decay()`, or the end rate when no step is left to decay over."""
    return optax.constant_schedule(end_learning_rate) if decay_steps == 0 else make_decay()


def constant(
    base_learning_rate: float,
    *,
    warmup_steps: int = 0,
    warmup_start_value: float = 0.0,
    cooldown_steps: int = 0,
    num_steps: int | None = None,
) -> optax.Schedule:
    """Linear warmup, then `base_learning_rate` until the cooldown (if any).

    Arguments:
        base_learning_rate: the learning rate after warmup.
        warmup_steps: steps of linear warmup (0: no warmup).
        warmup_start_value: the learning rate at step 0 of the warmup.
        cooldown_steps: steps of linear cooldown to 0 ending at `num_steps` (0: none).
        num_steps: total training steps; needed only for a cooldown.

    Returns:
        An `optax.Schedule`.
    """
    return with_warmup_and_cooldown(
        optax.constant_schedule(base_learning_rate),
        base_learning_rate=base_learning_rate,
        warmup_steps=warmup_steps,
        warmup_start_value=warmup_start_value,
        cooldown_steps=cooldown_steps,
        num_steps=num_steps,
    )


def warmup_cosine_decay(
    base_learning_rate: float,
    *,
    num_steps: int,
    warmup_steps: int = 0,
    end_learning_rate: float = 0.0,
    warmup_start_value: float = 0.0,
    cooldown_steps: int = 0,
) -> optax.Schedule:
    """Linear warmup, then a half-cosine from the base to the end learning rate.

    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
    ICLR 2017.

    Arguments:
        base_learning_rate: the peak learning rate, reached at `warmup_steps`.
        num_steps: total training steps, warmup included; the rate is
            `end_learning_rate` from this step on.
        warmup_steps: steps of linear warmup (0: start at the peak).
        end_learning_rate: the final learning rate.
        warmup_start_value: the learning rate at step 0 of the warmup.
        cooldown_steps: steps of linear cooldown to 0 ending at `num_steps` (0: none).

    Returns:
        An `optax.Schedule`.
    """
    check_phases(
        num_steps=num_steps,
        warmup_steps=warmup_steps,
        warmup_start_value=warmup_start_value,
        cooldown_steps=cooldown_steps,
    )
    decay_steps = num_steps - warmup_steps
    alpha = end_learning_rate / base_learning_rate if base_learning_rate else 0.0
    decay = _decay_or_end(
        decay_steps,
        end_learning_rate,
        lambda: optax.cosine_decay_schedule(base_learning_rate, decay_steps, alpha),
    )
    return with_warmup_and_cooldown(
        decay,
        base_learning_rate=base_learning_rate,
        warmup_steps=warmup_steps,
        warmup_start_value=warmup_start_value,
        cooldown_steps=cooldown_steps,
        num_steps=num_steps,
    )


def warmup_linear_decay(
    base_learning_rate: float,
    *,
    num_steps: int,
    warmup_steps: int = 0,
    end_learning_rate: float = 0.0,
    warmup_start_value: float = 0.0,
    cooldown_steps: int = 0,
) -> optax.Schedule:
    """Linear warmup, then a straight line from the base to the end learning rate.

    Arguments:
        base_learning_rate: the peak learning rate, reached at `warmup_steps`.
        num_steps: total training steps, warmup included; the rate is
            `end_learning_rate` from this step on.
        warmup_steps: steps of linear warmup (0: start at the peak).
        end_learning_rate: the final learning rate.
        warmup_start_value: the learning rate at step 0 of the warmup.
        cooldown_steps: steps of linear cooldown to 0 ending at `num_steps` (0: none).

    Returns:
        An `optax.Schedule`.
    """
    return warmup_polynomial_decay(
        base_learning_rate,
        num_steps=num_steps,
        power=1.0,
        warmup_steps=warmup_steps,
        end_learning_rate=end_learning_rate,
        warmup_start_value=warmup_start_value,
        cooldown_steps=cooldown_steps,
    )


def warmup_polynomial_decay(
    base_learning_rate: float,
    *,
    num_steps: int,
    power: float,
    end_learning_rate: float = 0.0,
    warmup_steps: int = 0,
    warmup_start_value: float = 0.0,
    cooldown_steps: int = 0,
) -> optax.Schedule:
    """Linear warmup, then `end + (base - end) * (1 - t / T) ** power`.

    `t` counts the steps after warmup and `T = num_steps - warmup_steps`; as
    `tf.train.polynomial_decay` and Scenic's `polynomial` factor (`power=1` is
    `warmup_linear_decay`; DeepLab's "poly" rate uses `power=0.9`, Chen et al. 2017,
    https://arxiv.org/abs/1606.00915).

    Arguments:
        base_learning_rate: the peak learning rate, reached at `warmup_steps`.
        num_steps: total training steps, warmup included; the rate is
            `end_learning_rate` from this step on.
        power: the exponent of the decay; positive.
        end_learning_rate: the final learning rate.
        warmup_steps: steps of linear warmup (0: start at the peak).
        warmup_start_value: the learning rate at step 0 of the warmup.
        cooldown_steps: steps of linear cooldown to 0 ending at `num_steps` (0: none).

    Returns:
        An `optax.Schedule`.
    """
    check_phases(
        num_steps=num_steps,
        warmup_steps=warmup_steps,
        warmup_start_value=warmup_start_value,
        cooldown_steps=cooldown_steps,
    )
    if isinstance(power, bool) or not isinstance(power, numbers.Real) or not 0 < power < math.inf:
        raise ValueError(f"`power` must be a positive finite number. Received: {power!r}.")
    decay_steps = num_steps - warmup_steps
    decay = _decay_or_end(
        decay_steps,
        end_learning_rate,
        lambda: _polynomial_decay(base_learning_rate, end_learning_rate, power, decay_steps),
    )
    return with_warmup_and_cooldown(
        decay,
        base_learning_rate=base_learning_rate,
        warmup_steps=warmup_steps,
        warmup_start_value=warmup_start_value,
        cooldown_steps=cooldown_steps,
        num_steps=num_steps,
    )


def warmup_exponential_decay(
    base_learning_rate: float,
    *,
    transition_steps: int,
    decay_rate: float,
    staircase: bool = False,
    end_learning_rate: float | None = None,
    warmup_steps: int = 0,
    warmup_start_value: float = 0.0,
    cooldown_steps: int = 0,
    num_steps: int | None = None,
) -> optax.Schedule:
    """Linear warmup, then `base * decay_rate ** (t / transition_steps)`.

    `t` counts the steps after warmup; with `staircase=True` the exponent is rounded
    down, so the rate drops by `decay_rate` once every `transition_steps` steps (as
    `tf.train.exponential_decay`, Scenic's `exponential_decay` factor and
    `optax.exponential_decay`).

    Arguments:
        base_learning_rate: the peak learning rate, reached at `warmup_steps`.
        transition_steps: steps over which the rate is multiplied by `decay_rate`.
        decay_rate: the factor per `transition_steps`; positive (below 1 to decay).
        staircase: decay in steps rather than continuously.
        end_learning_rate: if set, the rate stops there (a floor when `decay_rate`
            is below 1, a ceiling above).
        warmup_steps: steps of linear warmup (0: start at the peak).
        warmup_start_value: the learning rate at step 0 of the warmup.
        cooldown_steps: steps of linear cooldown to 0 ending at `num_steps` (0: none).
        num_steps: total training steps; needed only for a cooldown.

    Returns:
        An `optax.Schedule`.
    """
    if isinstance(transition_steps, bool) or not isinstance(transition_steps, int) or transition_steps <= 0:
        raise ValueError(f"`transition_steps` must be a positive integer. Received: {transition_steps!r}.")
    if (
        isinstance(decay_rate, bool)
        or not isinstance(decay_rate, numbers.Real)
        or not 0 < decay_rate < math.inf
    ):
        raise ValueError(f"`decay_rate` must be a positive finite number. Received: {decay_rate!r}.")
    decay = optax.exponential_decay(
        base_learning_rate,
        transition_steps,
        decay_rate,
        staircase=staircase,
        end_value=end_learning_rate,
    )
    return with_warmup_and_cooldown(
        decay,
        base_learning_rate=base_learning_rate,
        warmup_steps=warmup_steps,
        warmup_start_value=warmup_start_value,
        cooldown_steps=cooldown_steps,
        num_steps=num_steps,
    )


def warmup_rsqrt_decay(
    base_learning_rate: float,
    *,
    warmup_steps: int,
    timescale: int | None = None,
    warmup_start_value: float = 0.0,
    cooldown_steps: int = 0,
    num_steps: int | None = None,
) -> optax.Schedule:
    """Linear warmup, then inverse-square-root decay.

    After warmup the rate is `base * sqrt(timescale / (step - warmup_steps +
    timescale))`, as `rsqrt` decay in Scenic and big_vision; with the default
    `timescale=warmup_steps` this is `base * sqrt(warmup_steps / step)`, the schedule of
    Vaswani et al., "Attention Is All You Need", NeurIPS 2017. It never reaches 0 by
    itself: big_vision ends it with a cooldown (`cooldown_steps`).

    Arguments:
        base_learning_rate: the peak learning rate, reached at `warmup_steps`.
        warmup_steps: steps of linear warmup.
        timescale: steps after warmup over which the rate falls by `1/sqrt(2)`;
            defaults to `warmup_steps` and must be given when that is 0.
        warmup_start_value: the learning rate at step 0 of the warmup.
        cooldown_steps: steps of linear cooldown to 0 ending at `num_steps` (0: none).
        num_steps: total training steps; needed only for a cooldown.

    Returns:
        An `optax.Schedule`.
    """
    check_non_negative("warmup_steps", warmup_steps)
    if timescale is None:
        if warmup_steps == 0:
            raise ValueError(
                "`timescale` must be given when `warmup_steps` (=0) is 0; it defaults to `warmup_steps`"
            )
        timescale = warmup_steps
    if timescale <= 0:
        raise ValueError(f"`timescale` (={timescale}) must be positive")

    def decay(count):
        # `join_schedules` also evaluates this during warmup, at negative counts.
        count = jnp.maximum(count, 0)
        return base_learning_rate * jnp.sqrt(timescale / (count + timescale))

    return with_warmup_and_cooldown(
        decay,
        base_learning_rate=base_learning_rate,
        warmup_steps=warmup_steps,
        warmup_start_value=warmup_start_value,
        cooldown_steps=cooldown_steps,
        num_steps=num_steps,
    )


def clip_by_global_norm(
    optimizer: optax.GradientTransformation, max_norm: float | None
) -> optax.GradientTransformation:
    """Clip the gradients to a global norm of at most `max_norm` before `optimizer`.

    Pascanu et al., "On the difficulty of training recurrent neural networks",
    ICML 2013.

    Arguments:
        optimizer: the optax optimizer that receives the clipped gradients.
        max_norm: the largest global L2 norm of the gradients; `None` turns
            clipping off.

    Returns:
        `optax.chain(optax.clip_by_global_norm(max_norm), optimizer)`, or `optimizer`
        itself when `max_norm` is `None`.
    """
    if max_norm is None:
        return optimizer
    if not max_norm > 0:
        raise ValueError(f"`max_norm` (={max_norm}) must be positive or None")
    return optax.chain(optax.clip_by_global_norm(max_norm), optimizer)
