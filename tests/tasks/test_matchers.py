"""Matchers against scipy's `linear_sum_assignment`, after Scenic's matcher tests.

Random cases are batched into one call per shape, and every test on a shape passes a
`target_mask` (all True for unpadded examples), so each matcher compiles once per shape
rather than once per case or per test.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from scenic_eqx.tasks import (
    box_cxcywh_to_xyxy,
    generalized_box_iou,
    greedy_matcher,
    hungarian_jax_matcher,
    hungarian_matcher,
    sinkhorn_matcher,
)
from scenic_eqx.tasks._matchers._common import check_inputs

MATCHERS = {
    "hungarian": hungarian_matcher,
    "hungarian_jax": hungarian_jax_matcher,
    "greedy": greedy_matcher,
    "sinkhorn": sinkhorn_matcher,
}
EXACT = ["hungarian", "hungarian_jax"]
JITTED = {name: jax.jit(matcher) for name, matcher in MATCHERS.items()}
# Square, more predictions than targets (DETR's case), fewer predictions than targets.
SHAPES = [(10, 10), (12, 7), (7, 12)]
BATCH = 120


def _random_costs(shape, seed):
    """`BATCH` costs: uniform ones, and a third with small integers (many exact ties)."""
    rng = np.random.default_rng(seed)
    cost = rng.uniform(size=(BATCH, *shape)).astype(np.float32)
    cost[: BATCH // 3] = np.round(3 * cost[: BATCH // 3])
    return cost


def _random_masks(num_targets, seed):
    """Target masks: the first half of the batch unpadded, then every count of real
    targets, at random positions."""
    rng = np.random.default_rng(seed)
    masks = np.ones((BATCH, num_targets), bool)
    for b in range(BATCH // 2, BATCH):
        masks[b] = False
        masks[b, rng.permutation(num_targets)[: b % (num_targets + 1)]] = True
    return masks


def _random_problems(shape):
    n, m = shape
    cost = _random_costs(shape, seed=n * m)
    # Padded entries are arbitrary, at times the cheapest ones: they must not be preferred.
    cost[BATCH // 2 :, :, 1::3] -= 2.0
    return cost, _random_masks(m, seed=n + m)


def _check_matching(indices, n, m):
    """A valid matching in the documented layout: `[batch, 2, min(n, m)]`, distinct indices."""
    indices = np.asarray(indices)
    k = min(n, m)
    assert indices.shape == (len(indices), 2, k) and indices.dtype == np.int32
    predictions, targets = indices[:, 0], indices[:, 1]
    assert ((0 <= predictions) & (predictions < n)).all()
    assert ((0 <= targets) & (targets < m)).all()
    for rows in (predictions, targets):
        assert all(len(set(r)) == k for r in rows)
    arange = np.broadcast_to(np.arange(k), (len(indices), k))
    np.testing.assert_array_equal(targets if n >= m else predictions, arange)
    return indices


def _matched_cost(cost, indices, target_mask):
    """Per example, the total cost of the pairs whose target is real, and their number."""
    batch = np.arange(len(cost))[:, None]
    real = target_mask[batch, indices[:, 1]]
    return np.where(real, cost[batch, indices[:, 0], indices[:, 1]], 0).sum(-1), real.sum(-1)


def _optimal_cost(cost, target_mask):
    """scipy's optimal total per example, on the cost sliced to the real targets."""
    totals = []
    for b, c in enumerate(cost.astype(np.float64)):
        c = c[:, target_mask[b]]
        totals.append(c[linear_sum_assignment(c)].sum())
    return np.array(totals)


def _run(name, cost, mask):
    """Runs a jitted matcher; checks the matching is valid and real targets come first."""
    n, m = cost.shape[1:]
    indices = _check_matching(JITTED[name](jnp.asarray(cost), jnp.asarray(mask)), n, m)
    total, num_real = _matched_cost(cost, indices, mask)
    np.testing.assert_array_equal(num_real, np.minimum(n, mask.sum(-1)))
    return indices, total


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", EXACT)
def test_exact_matchers_reach_scipy_optimum(name, shape):
    cost, mask = _random_problems(shape)
    _, total = _run(name, cost, mask)
    np.testing.assert_allclose(total, _optimal_cost(cost, mask), atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
def test_greedy_is_valid_and_never_beats_the_optimum(shape):
    cost, mask = _random_problems(shape)
    _, total = _run("greedy", cost, mask)
    gap = total - _optimal_cost(cost, mask)
    assert (gap >= -1e-5).all()
    # Not a vacuous bound: on random costs greedy is often suboptimal.
    assert (gap > 1e-3).mean() > 0.2


@pytest.mark.parametrize("shape", SHAPES)
def test_sinkhorn_is_valid_and_never_beats_the_optimum(shape):
    cost, mask = _random_problems(shape)
    _, total = _run("sinkhorn", cost, mask)
    gap = total - _optimal_cost(cost, mask)
    assert (gap >= -1e-5).all()
    # Exact ties (the integer costs) are where the rounding misses most: the plan spreads
    # over the tied matchings. Without them it is close (measured mean gaps 0.0 to 0.04,
    # against greedy's 0.03 to 0.5).
    assert gap[BATCH // 3 :].mean() < 0.1


@pytest.mark.parametrize("name", ["hungarian_jax", "greedy", "sinkhorn"])
def test_on_device_matchers_end_with_a_matching_on_inf_and_nan(name):
    # A NaN from a diverging model must not hang a training step in a `while_loop`.
    cost, _ = _random_problems((12, 7))
    unpadded = np.ones((BATCH, 7), bool)
    forbidden = np.random.default_rng(9).uniform(size=cost.shape) < 0.3
    cost[:40][forbidden[:40]] = np.inf  # Forbidden pairs; a finite matching remains.
    cost[40:80, 3, 2] = np.nan
    cost[80:] = np.inf
    indices = _check_matching(JITTED[name](jnp.asarray(cost), jnp.asarray(unpadded)), 12, 7)
    if name == "hungarian_jax":
        total, _ = _matched_cost(cost[:40], indices[:40], unpadded[:40])
        np.testing.assert_allclose(total, _optimal_cost(cost[:40], unpadded[:40]), atol=1e-4)


def _planted_costs(shape, seed):
    """Costs whose optimal matching is planted: its pairs cost < 1, every other pair >= 2.

    Greedy is optimal on these (each step takes a planted pair), and they are the
    "well-separated" costs on which an entropic plan concentrates on the optimum.
    """
    n, m = shape
    rng = np.random.default_rng(seed)
    cost = rng.uniform(2.0, 3.0, size=(BATCH, n, m)).astype(np.float32)
    planted = np.zeros((BATCH, 2, min(n, m)), np.int64)
    for b in range(BATCH):
        predictions = rng.permutation(n)[: min(n, m)]
        targets = rng.permutation(m)[: min(n, m)]
        cost[b, predictions, targets] = rng.uniform(size=min(n, m))
        planted[b] = predictions, targets
    return cost, planted


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["greedy", "sinkhorn"])
def test_approximate_matchers_are_exact_on_separated_costs(name, shape):
    cost, planted = _planted_costs(shape, seed=7 * sum(shape))
    unpadded = np.ones((BATCH, shape[1]), bool)
    indices, total = _run(name, cost, unpadded)
    for b in range(BATCH):
        assert set(zip(*indices[b])) == set(zip(*planted[b]))
    np.testing.assert_allclose(total, _optimal_cost(cost, unpadded), atol=1e-4)


def test_sinkhorn_approaches_the_optimum_as_epsilon_shrinks():
    shape = (10, 10)
    cost = np.random.default_rng(11).uniform(size=(BATCH, *shape)).astype(np.float32)
    unpadded = jnp.ones((BATCH, shape[1]), bool)
    optimum = _optimal_cost(cost, np.asarray(unpadded))
    gaps = []
    # epsilon=0.01 is the default: that call reuses the compilation of the tests above.
    for epsilon in [1.0, 0.01, 0.002]:
        match = functools.partial(sinkhorn_matcher, epsilon=epsilon)
        match = JITTED["sinkhorn"] if epsilon == 0.01 else jax.jit(match)
        indices = _check_matching(match(jnp.asarray(cost), unpadded), *shape)
        total, _ = _matched_cost(cost, indices, np.asarray(unpadded))
        assert (total - optimum >= -1e-5).all()
        gaps.append(np.mean(total - optimum))
    assert all(later <= earlier + 1e-6 for earlier, later in itertools.pairwise(gaps)), gaps
    # A large epsilon is far off (the plan is nearly uniform), a small one close. Not
    # exact: a few of these random costs have near-ties that the plan mixes (measured
    # mean gaps 0.27, 0.021, 0.0045).
    assert gaps[0] > 0.1 and gaps[-1] < 0.01, gaps


@jax.jit
def _detr_cost(probs, labels, pred_boxes, target_boxes):
    """DETR's matching cost: -class probability + 5 L1 + 2 (-GIoU) (Carion et al. 2020)."""
    cost_class = -jnp.take_along_axis(probs, labels[:, None, :], axis=-1)
    cost_l1 = jnp.sum(jnp.abs(pred_boxes[:, :, None, :] - target_boxes[:, None, :, :]), axis=-1)
    cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(target_boxes))
    return cost_class + 5.0 * cost_l1 + 2.0 * cost_giou


@pytest.mark.parametrize("name", list(MATCHERS))
def test_detr_like_cost_recovers_identity(name):
    # 50 queries, 20 target slots: queries 0..19 are noisy copies of the targets (box
    # and class), the other 30 are random boxes with random class probabilities.
    batch, n, m, num_classes = 4, 50, 20, 20
    rng = np.random.default_rng(0)
    labels = rng.integers(0, num_classes, size=(batch, m))
    target_boxes = np.concatenate(
        [rng.uniform(0.2, 0.8, size=(batch, m, 2)), rng.uniform(0.05, 0.3, size=(batch, m, 2))],
        axis=-1,
    )
    noisy_copies = target_boxes + 0.01 * rng.normal(size=target_boxes.shape)
    junk = rng.uniform(0.1, 0.5, size=(batch, n - m, 4))
    pred_boxes = np.concatenate([noisy_copies, junk], axis=1)
    logits = rng.normal(size=(batch, n, num_classes))
    logits[:, :m] += 6.0 * np.eye(num_classes)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    as_f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    cost = _detr_cost(as_f32(probs), jnp.asarray(labels), as_f32(pred_boxes), as_f32(target_boxes))
    # The last target slots of half the batch are padding (with leftover boxes).
    mask = np.arange(m)[None, :] < np.array([m, m - 3, m, m // 2])[:, None]
    indices, _ = _run(name, np.asarray(cost), mask)
    # With n >= m, indices[:, 0, j] is the prediction of target j: its noisy copy.
    np.testing.assert_array_equal(indices[:, 0][mask], np.nonzero(mask)[1])


@pytest.mark.parametrize("name", list(MATCHERS))
def test_vmap_over_the_batch_equals_a_batched_call(name):
    cost, mask = _random_problems((12, 7))
    cost, mask = jnp.asarray(cost[::15]), jnp.asarray(mask[::15])
    batched = JITTED[name](cost, mask)
    one_at_a_time = jax.jit(jax.vmap(lambda c, t: MATCHERS[name](c[None], t[None])[0]))
    np.testing.assert_array_equal(one_at_a_time(cost, mask), batched)


# The two whose loops could not be differentiated: a host callback has no JVP rule and a
# `while_loop` no transpose. The other two sit behind the same `stop_gradient`.
@pytest.mark.parametrize("name", EXACT)
def test_gradient_flows_around_the_matcher(name):
    def matched_total(cost):
        indices = MATCHERS[name](cost)
        batch = jnp.arange(cost.shape[0])[:, None]
        return jnp.sum(cost[batch, indices[:, 0], indices[:, 1]])

    # Uniform costs: no ties, so the optimal matching is unique. No mask: this is also
    # the `target_mask=None` path.
    cost = np.random.default_rng(8).uniform(size=(3, 6, 4)).astype(np.float32)
    total, grad = jax.jit(jax.value_and_grad(matched_total))(jnp.asarray(cost))
    expected = np.zeros(cost.shape)
    for b in range(3):
        expected[b, *linear_sum_assignment(cost[b])] = 1.0
    # The matcher contributes no gradient: d(total)/d(cost) is the matching's indicator.
    np.testing.assert_array_equal(grad, expected)
    np.testing.assert_allclose(total, np.sum(cost * expected), rtol=1e-6)


def test_hungarian_runs_eagerly_on_a_hand_made_cost():
    cost = jnp.array([[[-100.0, 100.0], [100.0, 100.0], [100.0, -100.0]]])
    # Three predictions, two targets: targets 0 and 1 go to predictions 0 and 2.
    np.testing.assert_array_equal(hungarian_matcher(cost), [[[0, 2], [0, 1]]])
    # Transposed: two predictions, three targets.
    cost_t = jnp.swapaxes(cost, 1, 2)
    np.testing.assert_array_equal(hungarian_matcher(cost_t), [[[0, 1], [0, 2]]])


@pytest.mark.parametrize("shape", [(3, 0, 5), (3, 4, 0)])
@pytest.mark.parametrize("name", list(MATCHERS))
def test_empty_side_gives_no_pairs(name, shape):
    indices = MATCHERS[name](jnp.zeros(shape))
    assert indices.shape == (3, 2, 0) and indices.dtype == jnp.int32


def test_input_errors():
    with pytest.raises(
        ValueError, match=r"`cost` must have shape \[batch, n, m\]. Received: shape \(3, 4\)."
    ):
        check_inputs(np.zeros((3, 4)), None)
    with pytest.raises(ValueError, match="`cost` must be a floating-point array. Received: dtype int"):
        check_inputs(np.zeros((2, 3, 4), np.int32), None)
    with pytest.raises(
        ValueError, match=r"`target_mask` must have shape .* \(2, 4\).* Received: shape \(2, 3\)."
    ):
        check_inputs(np.zeros((2, 3, 4)), np.ones((2, 3), bool))
    # Under the suite's jaxtyping checks, the annotations catch the same mistakes first.
    with pytest.raises(jaxtyping.TypeCheckError, match="batch n m"):
        hungarian_jax_matcher(jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="`epsilon` must be positive. Received: 0.0."):
        sinkhorn_matcher(jnp.zeros((1, 2, 2)), epsilon=0.0)
    with pytest.raises(ValueError, match="`num_iters` must be a positive integer. Received: 0."):
        sinkhorn_matcher(jnp.zeros((1, 2, 2)), num_iters=0)


@pytest.mark.parametrize("name", list(MATCHERS))
def test_images_without_targets_give_a_valid_matching(name):
    # No target slot at all (`max_boxes` 0): no pairs.
    indices = JITTED[name](jnp.zeros((3, 4, 0)), jnp.zeros((3, 0), bool))
    assert indices.shape == (3, 2, 0) and indices.dtype == jnp.int32
    # Target slots that are all padding: still a matching (distinct predictions).
    cost = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
    indices = _check_matching(JITTED[name](jnp.asarray(cost), jnp.zeros((3, 2), bool)), 4, 2)
    assert indices.shape == (3, 2, 2)
