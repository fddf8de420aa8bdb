"""Learning-rate schedules (linear warmup, then a decay) and gradient clipping.

Every schedule maps the optimizer step (0 for the first update) to a learning rate and
is an ordinary `optax.Schedule`: pass it as `learning_rate=` to any optax optimizer.
Warmup rises linearly from 0 at step 0 to `base_learning_rate` at step `warmup_steps`,
as in Scenic and big_vision.
"""

from collections.abc import Sequence

import jax.numpy as jnp
import optax


def _check_non_negative(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"`{name}` (={value}) must be non-negative")


def _check_steps(num_steps: int, warmup_steps: int) -> None:
    if num_steps <= 0:
        raise ValueError(f"`num_steps` (={num_steps}) must be positive")
    _check_non_negative("warmup_steps", warmup_steps)
    if warmup_steps > num_steps:
        raise ValueError(f"`warmup_steps` (={warmup_steps}) must not exceed `num_steps` (={num_steps})")


def _with_warmup(base_learning_rate: float, warmup_steps: int, after: optax.Schedule) -> optax.Schedule:
    """`after` (counted from the end of warmup), preceded by a linear warmup.

    The step count is taken as float32 (exact up to 2**24 steps): optax's schedules mix
    it with Python floats, which strict dtype promotion refuses for an int32 count.
    """
    joined = after
    if warmup_steps > 0:
        warmup = optax.linear_schedule(0.0, base_learning_rate, warmup_steps)
        joined = optax.join_schedules([warmup, after], [warmup_steps])

    def schedule(count):
        return joined(jnp.asarray(count, jnp.float32))

    return schedule


def warmup_cosine_decay(
    base_learning_rate: float,
    *,
    num_steps: int,
    warmup_steps: int = 0,
    end_learning_rate: float = 0.0,
) -> optax.Schedule:
    """Linear warmup, then a half-cosine from the base to the end learning rate.

    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
    ICLR 2017.

    Arguments:
        base_learning_rate: the peak learning rate, reached at `warmup_steps`.
        num_steps: total training steps, warmup included; the rate is
            `end_learning_rate` from this step on.
        warmup_steps: steps of linear warmup from 0 (0: start at the peak).
        end_learning_rate: the final learning rate.

    Returns:
        An `optax.Schedule`.
    """
    _check_steps(num_steps, warmup_steps)
    decay_steps = num_steps - warmup_steps
    if decay_steps == 0:
        decay = optax.constant_schedule(end_learning_rate)
    else:
        alpha = end_learning_rate / base_learning_rate if base_learning_rate else 0.0
        decay = optax.cosine_decay_schedule(base_learning_rate, decay_steps, alpha)
    return _with_warmup(base_learning_rate, warmup_steps, decay)


def warmup_linear_decay(
    base_learning_rate: float,
    *,
    num_steps: int,
    warmup_steps: int = 0,
    end_learning_rate: float = 0.0,
) -> optax.Schedule:
    """Linear warmup, then a straight line from the base to the end learning rate.

    Arguments:
        base_learning_rate: the peak learning rate, reached at `warmup_steps`.
        num_steps: total training steps, warmup included; the rate is
            `end_learning_rate` from this step on.
        warmup_steps: steps of linear warmup from 0 (0: start at the peak).
        end_learning_rate: the final learning rate.

    Returns:
        An `optax.Schedule`.
    """
    _check_steps(num_steps, warmup_steps)
    decay_steps = num_steps - warmup_steps
    if decay_steps == 0:
        decay = optax.constant_schedule(end_learning_rate)
    else:
        decay = optax.linear_schedule(base_learning_rate, end_learning_rate, decay_steps)
    return _with_warmup(base_learning_rate, warmup_steps, decay)


def warmup_rsqrt_decay(
    base_learning_rate: float, *, warmup_steps: int, timescale: int | None = None
) -> optax.Schedule:
    """Linear warmup, then inverse-square-root decay.

    After warmup the rate is `base * sqrt(timescale / (step - warmup_steps +
    timescale))`, as `rsqrt` decay in Scenic and big_vision; with the default
    `timescale=warmup_steps` this is `base * sqrt(warmup_steps / step)`, the schedule of
    Vaswani et al., "Attention Is All You Need", NeurIPS 2017.

    Arguments:
        base_learning_rate: the peak learning rate, reached at `warmup_steps`.
        warmup_steps: steps of linear warmup from 0.
        timescale: steps after warmup over which the rate falls by `1/sqrt(2)`;
            defaults to `warmup_steps` and must be given when that is 0.

    Returns:
        An `optax.Schedule`.
    """
    _check_non_negative("warmup_steps", warmup_steps)
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

    return _with_warmup(base_learning_rate, warmup_steps, decay)


def warmup_step_decay(
    base_learning_rate: float,
    *,
    boundaries: Sequence[int],
    decay_factor: float = 0.1,
    warmup_steps: int = 0,
) -> optax.Schedule:
    """Linear warmup, then a piecewise-constant rate multiplied by `decay_factor` at each boundary.

    From step `boundaries[i]` on (counted from the first update, warmup included) the
    rate is `base_learning_rate * decay_factor**(i + 1)`: the step schedule of He et al.,
    "Deep Residual Learning for Image Recognition", CVPR 2016 (÷10 at epochs 30, 60
    and 80 of 90 in Goyal et al. 2017, https://arxiv.org/abs/1706.02677), and of
    DETR (Carion et al. 2020: ÷10 at epoch 200 of 300).

    Arguments:
        base_learning_rate: the rate after warmup and before the first boundary.
        boundaries: strictly increasing steps at which the rate is multiplied by
            `decay_factor`, each at least `warmup_steps`; e.g. `(200 * steps_per_epoch,)`.
        decay_factor: the factor applied at each boundary (0.1: divided by 10).
        warmup_steps: steps of linear warmup from 0 (0: start at the base rate).

    Returns:
        An `optax.Schedule`.
    """
    _check_non_negative("warmup_steps", warmup_steps)
    boundaries = tuple(boundaries)
    if not all(isinstance(b, int) and not isinstance(b, bool) for b in boundaries):
        raise ValueError(f"`boundaries` must be integer steps. Received: {boundaries!r}.")
    if any(later <= earlier for earlier, later in zip(boundaries, boundaries[1:])):
        raise ValueError(f"`boundaries` must be strictly increasing. Received: {boundaries!r}.")
    if boundaries and boundaries[0] < warmup_steps:
        raise ValueError(
            f"`boundaries` must not fall inside the warmup (`warmup_steps`={warmup_steps}). "
            f"Received: {boundaries!r}."
        )
    if not decay_factor > 0:
        raise ValueError(f"`decay_factor` (={decay_factor}) must be positive")
    # Each piece's rate in double precision, then rounded once to float32.
    rates = jnp.asarray([base_learning_rate * decay_factor**i for i in range(len(boundaries) + 1)])
    steps = jnp.asarray(boundaries, jnp.float32)  # the count arrives as float32 (`_with_warmup`)

    def decayed(count):
        # `join_schedules` counts from the end of warmup: back to steps from the start.
        return rates[jnp.sum(count + warmup_steps >= steps)]

    return _with_warmup(base_learning_rate, warmup_steps, decayed)


def constant(base_learning_rate: float, *, warmup_steps: int = 0) -> optax.Schedule:
    """Linear warmup, then `base_learning_rate` for ever.

    Arguments:
        base_learning_rate: the learning rate after warmup.
        warmup_steps: steps of linear warmup from 0 (0: no warmup).

    Returns:
        An `optax.Schedule`.
    """
    _check_non_negative("warmup_steps", warmup_steps)
    return _with_warmup(base_learning_rate, warmup_steps, optax.constant_schedule(base_learning_rate))


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
