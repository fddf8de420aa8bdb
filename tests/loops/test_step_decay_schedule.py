"""`loops.warmup_step_decay` and `loops.warmup_piecewise_constant`: literal values at and around each
boundary, agreement with optax, and their errors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from scenic_eqx import loops
from scenic_eqx._optimizer import build_optimizer


def _values(schedule, steps):
    """The schedule at `steps`, eagerly and under jit (which must agree)."""
    eager = np.array([float(schedule(step)) for step in steps])
    jitted = np.asarray(jax.jit(jax.vmap(schedule))(jnp.array(steps, jnp.int32)))
    np.testing.assert_array_equal(eager, jitted)
    return eager


def test_divides_by_ten_at_each_boundary():
    # ResNet's 90-epoch recipe with 10 steps an epoch: ÷10 at epochs 30, 60 and 80.
    schedule = loops.warmup_step_decay(0.1, boundaries=(300, 600, 800))
    steps = [0, 299, 300, 301, 599, 600, 799, 800, 900, 10_000]
    expected = [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001, 0.0001]
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-7)


def test_detr_drop_at_epoch_200_of_300():
    steps_per_epoch = 1848  # COCO train2017 at batch 64
    schedule = loops.warmup_step_decay(1e-4, boundaries=(200 * steps_per_epoch,))
    values = _values(schedule, [0, 369_599, 369_600, 554_399])
    np.testing.assert_allclose(values, [1e-4, 1e-4, 1e-5, 1e-5], rtol=1e-7)


def test_warmup_then_steps_counted_from_the_first_update():
    schedule = loops.warmup_step_decay(2.0, boundaries=(6, 8), decay_factor=0.5, warmup_steps=4)
    values = _values(schedule, [0, 1, 2, 4, 5, 6, 7, 8, 20])
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0, 2.0, 2.0, 1.0, 1.0, 0.5, 0.5], rtol=1e-7)


def test_no_boundaries_is_constant():
    np.testing.assert_allclose(_values(loops.warmup_step_decay(0.3, boundaries=()), [0, 99]), [0.3, 0.3])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(boundaries=(10, 10)), r"strictly increasing\. Received: \(10, 10\)"),
        (dict(boundaries=(20, 10)), r"strictly increasing\. Received: \(20, 10\)"),
        (dict(boundaries=(2.5,)), r"integer steps\. Received: \(2\.5,\)"),
        (dict(boundaries=(3,), warmup_steps=5), r"inside the warmup \(`warmup_steps`=5\)\. Received: \(3,\)"),
        (dict(boundaries=(3,), decay_factor=0.0), r"`decay_factor` \(=0\.0\) must be positive"),
        (dict(boundaries=(3,), warmup_steps=-1), r"`warmup_steps` \(=-1\) must be non-negative"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        loops.warmup_step_decay(1.0, **kwargs)


def test_a_config_names_it():
    config = ml_collections.ConfigDict(
        dict(
            schedule="warmup_step_decay",
            schedule_kwargs=dict(base_learning_rate=0.4, boundaries=(5,), warmup_steps=2),
            optimizer="sgd",
            optimizer_kwargs=dict(momentum=0.9),
            grad_clip_norm=None,
            num_train_steps=10,
        )
    )
    _, schedule = build_optimizer(config)
    np.testing.assert_allclose(_values(schedule, [1, 2, 4, 5, 9]), [0.2, 0.4, 0.4, 0.04, 0.04], rtol=1e-6)


def test_piecewise_constant_factors_are_of_the_base_rate():
    schedule = loops.warmup_piecewise_constant(
        0.4, boundaries=(3, 5), factors=(0.5, 0.0), warmup_steps=2, warmup_start_value=0.2
    )
    # Warmup 0.2 -> 0.4 over 2 steps; 0.4 * 0.5 from step 3; 0.4 * 0 from step 5.
    values = _values(schedule, [0, 1, 2, 3, 4, 5, 9])
    np.testing.assert_allclose(values, [0.2, 0.3, 0.4, 0.2, 0.2, 0.0, 0.0], rtol=1e-7)


def test_piecewise_constant_matches_optax():
    # optax scales each piece by the previous one: 0.5, then 0.1 / 0.5, then 1.0 / 0.1.
    ours = loops.warmup_piecewise_constant(2.0, boundaries=(100, 200, 300), factors=(0.5, 0.1, 1.0))
    reference = optax.piecewise_constant_schedule(2.0, {100: 0.5, 200: 0.2, 300: 10.0})
    steps = [0, 99, 100, 150, 199, 200, 299, 300, 1000]
    np.testing.assert_allclose(_values(ours, steps), [float(reference(s)) for s in steps], rtol=1e-6)


def test_step_decay_is_the_piecewise_schedule_with_powers_of_its_factor():
    steps = list(range(0, 20))
    step_decay = loops.warmup_step_decay(1.0, boundaries=(5, 10, 15), decay_factor=0.5, warmup_steps=3)
    piecewise = loops.warmup_piecewise_constant(
        1.0, boundaries=(5, 10, 15), factors=(0.5, 0.25, 0.125), warmup_steps=3
    )
    np.testing.assert_array_equal(_values(step_decay, steps), _values(piecewise, steps))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(boundaries=(3, 5), factors=(0.5,)),
            r"one entry per boundary \(2\)\. Received: 1 factors, \(0\.5,\)",
        ),
        (dict(boundaries=(3,), factors=(-0.5,)), r"finite non-negative numbers\. Received: \(-0\.5,\)"),
        (dict(boundaries=(3,), factors=(float("nan"),)), r"finite non-negative numbers\. Received: \(nan,\)"),
        (dict(boundaries=(4, 2), factors=(1, 1)), r"strictly increasing\. Received: \(4, 2\)"),
        (dict(boundaries=(1,), factors=(1,), warmup_steps=2), r"inside the warmup \(`warmup_steps`=2\)"),
    ],
)
def test_piecewise_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        loops.warmup_piecewise_constant(1.0, **kwargs)
