import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scenic_eqx.loops._schedules import (
    clip_by_global_norm,
    constant,
    warmup_cosine_decay,
    warmup_linear_decay,
    warmup_rsqrt_decay,
)


def _check(schedule, expected: dict[int, float]):
    """The schedule's value at each step, eagerly and under jit."""
    steps = jnp.array(list(expected), jnp.int32)
    np.testing.assert_allclose([schedule(step) for step in expected], list(expected.values()), atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(schedule))(steps), list(expected.values()), atol=1e-6)


def test_warmup_cosine_decay():
    schedule = warmup_cosine_decay(1.0, num_steps=10, warmup_steps=2, end_learning_rate=0.1)
    quarter = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))  # 0.86819805
    _check(schedule, {0: 0.0, 1: 0.5, 2: 1.0, 4: quarter, 6: 0.55, 10: 0.1, 25: 0.1})


def test_warmup_cosine_decay_without_warmup():
    _check(warmup_cosine_decay(2.0, num_steps=4), {0: 2.0, 2: 1.0, 4: 0.0, 9: 0.0})


def test_warmup_linear_decay():
    schedule = warmup_linear_decay(2.0, num_steps=10, warmup_steps=2)
    _check(schedule, {0: 0.0, 1: 1.0, 2: 2.0, 6: 1.0, 10: 0.0, 15: 0.0})
    schedule = warmup_linear_decay(1.0, num_steps=4, end_learning_rate=0.2)
    _check(schedule, {0: 1.0, 2: 0.6, 4: 0.2, 8: 0.2})


def test_warmup_equal_to_num_steps():
    # Nothing is left to decay: warmup, then the end rate.
    for make in (warmup_cosine_decay, warmup_linear_decay):
        schedule = make(1.0, num_steps=4, warmup_steps=4, end_learning_rate=0.1)
        _check(schedule, {0: 0.0, 2: 0.5, 4: 0.1, 7: 0.1})


def test_warmup_rsqrt_decay():
    # base * sqrt(warmup_steps / step) after warmup.
    schedule = warmup_rsqrt_decay(1.0, warmup_steps=4)
    _check(schedule, {0: 0.0, 2: 0.5, 4: 1.0, 16: 0.5, 100: 0.2})
    # base * sqrt(timescale / (step - warmup_steps + timescale)).
    schedule = warmup_rsqrt_decay(2.0, warmup_steps=4, timescale=10)
    _check(schedule, {2: 1.0, 4: 2.0, 14: 2 * math.sqrt(0.5), 34: 1.0})
    _check(warmup_rsqrt_decay(1.0, warmup_steps=0, timescale=1), {0: 1.0, 3: 0.5})


def test_constant():
    _check(constant(0.3, warmup_steps=3), {0: 0.0, 1: 0.1, 3: 0.3, 1000: 0.3})
    _check(constant(0.3), {0: 0.3, 1000: 0.3})


def test_schedule_drives_an_optax_optimizer():
    # The first update uses step 0: with warmup its learning rate is 0.
    optimizer = optax.sgd(warmup_linear_decay(1.0, num_steps=4, warmup_steps=2))
    params = jnp.zeros(())
    state = optimizer.init(params)
    updates = []
    for _ in range(5):
        update, state = optimizer.update(jnp.ones(()), state, params)
        updates.append(float(update))
    np.testing.assert_allclose(updates, [0.0, -0.5, -1.0, -0.5, 0.0])


def test_clip_by_global_norm():
    optimizer = clip_by_global_norm(optax.sgd(1.0), max_norm=1.0)
    grads = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}  # global norm 5
    updates, _ = optimizer.update(grads, optimizer.init(grads))
    np.testing.assert_allclose(updates["a"], [-0.6], rtol=1e-6)
    np.testing.assert_allclose(updates["b"], [-0.8], rtol=1e-6)
    # Below the threshold the gradients pass unchanged.
    small = {"a": jnp.array([0.3]), "b": jnp.array([0.4])}
    updates, _ = optimizer.update(small, optimizer.init(small))
    np.testing.assert_allclose(updates["a"], [-0.3], rtol=1e-6)


def test_clip_by_global_norm_none_is_identity():
    sgd = optax.sgd(1.0)
    assert clip_by_global_norm(sgd, None) is sgd


@pytest.mark.parametrize("max_norm", [0.0, -1.0])
def test_clip_by_global_norm_bad_max_norm(max_norm):
    match = rf"`max_norm` \(={max_norm}\) must be positive"
    with pytest.raises(ValueError, match=match):
        clip_by_global_norm(optax.sgd(1.0), max_norm)


@pytest.mark.parametrize("make", [warmup_cosine_decay, warmup_linear_decay])
def test_decay_bad_arguments(make):
    with pytest.raises(ValueError, match=r"`num_steps` \(=0\) must be positive"):
        make(1.0, num_steps=0)
    with pytest.raises(ValueError, match=r"`warmup_steps` \(=-1\) must be non-negative"):
        make(1.0, num_steps=10, warmup_steps=-1)
    with pytest.raises(ValueError, match=r"`warmup_steps` \(=11\) must not exceed `num_steps` \(=10\)"):
        make(1.0, num_steps=10, warmup_steps=11)


def test_rsqrt_bad_arguments():
    match = r"`timescale` must be given when `warmup_steps`"
    with pytest.raises(ValueError, match=match):
        warmup_rsqrt_decay(1.0, warmup_steps=0)
    with pytest.raises(ValueError, match=r"`timescale` \(=0\) must be positive"):
        warmup_rsqrt_decay(1.0, warmup_steps=5, timescale=0)
    with pytest.raises(ValueError, match=r"`warmup_steps` \(=-2\) must be non-negative"):
        warmup_rsqrt_decay(1.0, warmup_steps=-2)


def test_constant_bad_arguments():
    with pytest.raises(ValueError, match=r"`warmup_steps` \(=-1\) must be non-negative"):
        constant(1.0, warmup_steps=-1)
