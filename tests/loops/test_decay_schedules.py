"""Exponential and polynomial decays, warmup from a non-zero start and the linear cooldown:
literal values worked out by hand, and agreement with optax's own schedules."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from scenic_eqx import loops
from scenic_eqx._optimizer import build_optimizer


def _values(schedule, steps):
    """The schedule at `steps`, eagerly and under jit on int32 counts (which must agree)."""
    eager = np.array([float(schedule(step)) for step in steps])
    jitted = np.asarray(jax.jit(jax.vmap(schedule))(jnp.array(steps, jnp.int32)))
    np.testing.assert_allclose(eager, jitted, rtol=1e-6, atol=1e-7)
    assert jitted.dtype == np.float32
    return eager


def test_exponential_decay_literal():
    schedule = loops.warmup_exponential_decay(1.0, transition_steps=2, decay_rate=0.5, warmup_steps=2)
    # After warmup: 0.5 ** ((step - 2) / 2): step 3 -> 0.5 ** 0.5, step 4 -> 0.5, step 6 -> 0.25.
    steps = [0, 1, 2, 3, 4, 6]
    np.testing.assert_allclose(_values(schedule, steps), [0, 0.5, 1, math.sqrt(0.5), 0.5, 0.25], rtol=1e-6)


def test_exponential_decay_staircase_and_floor():
    staircase = loops.warmup_exponential_decay(1.0, transition_steps=2, decay_rate=0.5, staircase=True)
    # The exponent floor(step / 2): halved at steps 2, 4, 6.
    np.testing.assert_allclose(_values(staircase, [0, 1, 2, 3, 4, 6]), [1, 1, 0.5, 0.5, 0.25, 0.125])
    floored = loops.warmup_exponential_decay(
        1.0, transition_steps=2, decay_rate=0.5, staircase=True, end_learning_rate=0.3
    )
    # 0.25 and 0.125 are below the floor of 0.3.
    np.testing.assert_allclose(_values(floored, [2, 4, 6]), [0.5, 0.3, 0.3])


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay_matches_optax(staircase):
    ours = loops.warmup_exponential_decay(
        2.0,
        transition_steps=4,
        decay_rate=0.8,
        staircase=staircase,
        end_learning_rate=0.5,
        warmup_steps=3,
        warmup_start_value=0.1,
    )
    reference = optax.warmup_exponential_decay_schedule(
        init_value=0.1,
        peak_value=2.0,
        warmup_steps=3,
        transition_steps=4,
        decay_rate=0.8,
        staircase=staircase,
        end_value=0.5,
    )
    steps = list(range(40))
    np.testing.assert_allclose(_values(ours, steps), [float(reference(s)) for s in steps], rtol=1e-6)


def test_polynomial_decay_literal():
    schedule = loops.warmup_polynomial_decay(2.0, num_steps=6, power=2.0, warmup_steps=2)
    # After warmup, over T = 4 steps: 2 * (1 - t/4)**2 -> t=1: 1.125, t=2: 0.5, t=3: 0.125.
    steps = [0, 1, 2, 3, 4, 5, 6, 9]
    np.testing.assert_allclose(_values(schedule, steps), [0, 1, 2, 1.125, 0.5, 0.125, 0, 0], atol=1e-7)
    schedule = loops.warmup_polynomial_decay(2.0, num_steps=4, power=0.5, end_learning_rate=0.4)
    # 0.4 + 1.6 * sqrt(1 - t/4): t=3 -> 0.4 + 1.6 * 0.5 = 1.2.
    np.testing.assert_allclose(_values(schedule, [0, 3, 4, 7]), [2.0, 1.2, 0.4, 0.4], rtol=1e-6)


def test_polynomial_decay_matches_optax():
    ours = loops.warmup_polynomial_decay(
        1.0, num_steps=50, power=0.9, end_learning_rate=0.01, warmup_steps=5, warmup_start_value=0.2
    )
    reference = optax.join_schedules(
        [optax.linear_schedule(0.2, 1.0, 5), optax.polynomial_schedule(1.0, 0.01, 0.9, 45)], [5]
    )
    steps = list(range(60))
    np.testing.assert_allclose(_values(ours, steps), [float(reference(s)) for s in steps], rtol=1e-6)


def test_polynomial_decay_ends_exactly_under_jit():
    # optax.polynomial_schedule(1.0, 0.01, 0.9, 45) gives NaN at step 45 under jit: XLA's
    # t * (1/45) is 1 + 2e-8 there, and a negative base to the power 0.9 is NaN.
    schedule = loops.warmup_polynomial_decay(
        1.0, num_steps=50, power=0.9, end_learning_rate=0.01, warmup_steps=5
    )
    assert float(jax.jit(schedule)(jnp.int32(50))) == np.float32(0.01)
    # The linear decay and the cooldown never go below 0, not even by a rounding error.
    for schedule in (
        loops.warmup_linear_decay(1.0, num_steps=45),
        loops.constant(1.0, cooldown_steps=45, num_steps=45),
    ):
        assert np.all(np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(40, 50))) >= 0)


def test_power_one_is_the_linear_decay():
    linear = loops.warmup_linear_decay(1.0, num_steps=10, warmup_steps=2, end_learning_rate=0.1)
    polynomial = loops.warmup_polynomial_decay(
        1.0, num_steps=10, power=1.0, warmup_steps=2, end_learning_rate=0.1
    )
    steps = list(range(12))
    np.testing.assert_array_equal(_values(linear, steps), _values(polynomial, steps))


def test_warmup_from_a_non_zero_start():
    # Linear from 0.2 to 1.0 over 4 steps: +0.2 a step.
    schedule = loops.constant(1.0, warmup_steps=4, warmup_start_value=0.2)
    np.testing.assert_allclose(_values(schedule, [0, 1, 2, 4, 100]), [0.2, 0.4, 0.6, 1.0, 1.0], rtol=1e-6)


def test_cosine_with_a_warmup_start_matches_optax():
    ours = loops.warmup_cosine_decay(
        1.0, num_steps=30, warmup_steps=6, end_learning_rate=0.05, warmup_start_value=0.1
    )
    # optax counts its `decay_steps` from step 0, warmup included.
    reference = optax.warmup_cosine_decay_schedule(0.1, 1.0, 6, 30, end_value=0.05)
    steps = list(range(35))
    np.testing.assert_allclose(_values(ours, steps), [float(reference(s)) for s in steps], rtol=1e-6)


def test_linear_cooldown_to_zero():
    schedule = loops.constant(1.0, warmup_steps=2, cooldown_steps=4, num_steps=10)
    # The rate times min(1, (10 - step) / 4): 0.75, 0.5, 0.25 and 0 at steps 7 to 10.
    steps = [0, 1, 2, 6, 7, 8, 9, 10, 12]
    np.testing.assert_allclose(_values(schedule, steps), [0, 0.5, 1, 1, 0.75, 0.5, 0.25, 0, 0], atol=1e-7)


def test_cooldown_multiplies_the_decay():
    rsqrt = loops.warmup_rsqrt_decay(1.0, warmup_steps=4, cooldown_steps=8, num_steps=24)
    # sqrt(4 / step) times min(1, (24 - step) / 8): step 16 -> 0.5, step 20 -> sqrt(0.2) / 2.
    np.testing.assert_allclose(_values(rsqrt, [4, 16, 20, 24]), [1, 0.5, math.sqrt(0.2) / 2, 0], atol=1e-7)
    cosine = loops.warmup_cosine_decay(1.0, num_steps=10, cooldown_steps=2)
    # Step 9: the half-cosine 0.5 * (1 + cos(0.9 pi)), halved by the cooldown.
    np.testing.assert_allclose(
        _values(cosine, [8, 9]),
        [0.5 * (1 + math.cos(0.8 * math.pi)), 0.25 * (1 + math.cos(0.9 * math.pi))],
        rtol=1e-5,
    )


def test_every_schedule_takes_the_shared_phases():
    # Warmup from 0.5 over 2 steps, cooldown over the last 2 of 8 steps, around each decay.
    phases = dict(warmup_steps=2, warmup_start_value=0.5, cooldown_steps=2, num_steps=8)
    schedules = [
        loops.constant(1.0, **phases),
        loops.warmup_cosine_decay(1.0, **phases),
        loops.warmup_linear_decay(1.0, **phases),
        loops.warmup_polynomial_decay(1.0, power=2.0, **phases),
        loops.warmup_exponential_decay(1.0, transition_steps=3, decay_rate=0.5, **phases),
        loops.warmup_rsqrt_decay(1.0, **phases),
        loops.warmup_step_decay(1.0, boundaries=(4,), **phases),
        loops.warmup_piecewise_constant(1.0, boundaries=(4,), factors=(0.5,), **phases),
    ]
    for schedule in schedules:
        np.testing.assert_allclose(_values(schedule, [0, 1, 2, 8, 9]), [0.5, 0.75, 1, 0, 0], atol=1e-7)


def test_a_config_names_each_new_schedule():
    def build(schedule, **kwargs):
        config = ml_collections.ConfigDict(
            dict(
                schedule=schedule,
                schedule_kwargs=kwargs,
                optimizer="sgd",
                optimizer_kwargs={},
                grad_clip_norm=None,
                num_train_steps=10,
            )
        )
        return build_optimizer(config)[1]

    # `num_steps` comes from `num_train_steps`: the cooldown ends at step 10.
    schedule = build("warmup_exponential_decay", base_learning_rate=1.0, transition_steps=1, decay_rate=0.5,
                     cooldown_steps=2)  # fmt: skip
    np.testing.assert_allclose(_values(schedule, [1, 9, 10]), [0.5, 0.5**9 * 0.5, 0], rtol=1e-6)
    schedule = build("warmup_polynomial_decay", base_learning_rate=1.0, power=2.0)
    np.testing.assert_allclose(_values(schedule, [5, 10]), [0.25, 0], rtol=1e-6)
    schedule = build("warmup_piecewise_constant", base_learning_rate=1.0, boundaries=(5,), factors=(0.3,))
    np.testing.assert_allclose(_values(schedule, [4, 5]), [1.0, 0.3], rtol=1e-6)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: loops.constant(1.0, cooldown_steps=3), r"`cooldown_steps` \(=3\) needs `num_steps`"),
        (lambda: loops.constant(1.0, cooldown_steps=-1), r"`cooldown_steps` \(=-1\) must be non-negative"),
        (
            lambda: loops.warmup_cosine_decay(1.0, num_steps=10, warmup_steps=6, cooldown_steps=5),
            r"`warmup_steps` \(=6\) plus `cooldown_steps` \(=5\) must not exceed `num_steps` \(=10\)",
        ),
        (
            lambda: loops.constant(1.0, warmup_start_value=0.1),
            r"`warmup_start_value` \(=0\.1\) has no effect without a warmup.*Received: `warmup_steps`=0",
        ),
        (
            lambda: loops.constant(1.0, warmup_steps=2, warmup_start_value=-0.1),
            r"`warmup_start_value` must be a finite non-negative learning rate\. Received: -0\.1\.",
        ),
        (
            lambda: loops.warmup_exponential_decay(1.0, transition_steps=0, decay_rate=0.5),
            r"`transition_steps` must be a positive integer\. Received: 0\.",
        ),
        (
            lambda: loops.warmup_exponential_decay(1.0, transition_steps=5, decay_rate=0.0),
            r"`decay_rate` must be a positive finite number\. Received: 0\.0\.",
        ),
        (
            lambda: loops.warmup_polynomial_decay(1.0, num_steps=5, power=0),
            r"`power` must be a positive finite number\. Received: 0\.",
        ),
        (
            lambda: loops.warmup_polynomial_decay(1.0, num_steps=5, power=1.0, warmup_steps=6),
            r"`warmup_steps` \(=6\) must not exceed `num_steps` \(=5\)",
        ),
    ],
)
def test_bad_arguments_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()
