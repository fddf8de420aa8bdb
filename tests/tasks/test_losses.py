import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scenic_eqx.tasks import box_l1_loss, dice_loss, l1_loss, sigmoid_focal_loss, softmax_focal_loss

L3 = math.log(3)


def _sigmoid_focal_reference(logits, targets, alpha, gamma):
    """The focal loss as RetinaNet writes it (torchvision's form), in float64 numpy."""
    x, t = np.asarray(logits, np.float64), np.asarray(targets, np.float64)
    p = 1 / (1 + np.exp(-x))
    cross_entropy = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    p_t = p * t + (1 - p) * (1 - t)
    loss = cross_entropy * (1 - p_t) ** gamma
    return loss if alpha is None else (alpha * t + (1 - alpha) * (1 - t)) * loss


def _softmax_focal_reference(logits, targets, gamma, alpha=None):
    """`-(1 - p_t)^gamma sum_c alpha_c y_c log p_c` written directly, in float64 numpy."""
    x, y = np.asarray(logits, np.float64), np.asarray(targets, np.float64)
    log_p = x - x.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    p_t = (y * np.exp(log_p)).sum(-1)
    weights = y if alpha is None else y * np.asarray(alpha, np.float64)
    return -((1 - p_t) ** gamma) * (weights * log_p).sum(-1)


def test_sigmoid_focal_loss_literal():
    logits = jnp.array([L3, L3, 0.0, -L3])
    targets = jnp.array([1.0, 0.0, 1.0, 0.0])
    loss = sigmoid_focal_loss(logits, targets)
    assert loss.shape == (4,) and loss.dtype == jnp.float32
    expected = [
        0.25 * (1 / 4) ** 2 * math.log(4 / 3),  # p = 3/4, positive: alpha (1 - p)^2 (-log p)
        0.75 * (3 / 4) ** 2 * math.log(4),  # p = 3/4, negative: (1 - alpha) p^2 (-log(1 - p))
        0.25 * (1 / 2) ** 2 * math.log(2),  # p = 1/2
        0.75 * (1 / 4) ** 2 * math.log(4 / 3),  # p = 1/4, negative: 1 - p = 3/4
    ]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    # alpha None and gamma 0: the plain sigmoid cross-entropy.
    np.testing.assert_allclose(
        sigmoid_focal_loss(logits, targets, alpha=None, gamma=0),
        optax.losses.sigmoid_binary_cross_entropy(logits, targets),
        rtol=1e-6,
    )


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (None, 0.5), (0.6, 0.0), (0.25, 3)])
def test_sigmoid_focal_loss_matches_the_reference_formula(alpha, gamma):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(4 * rng.normal(size=(5, 7)), jnp.float32)
    targets = jnp.asarray(rng.random((5, 7)) < 0.3, jnp.int32)  # integer multi-hot
    soft = jnp.asarray(rng.random((5, 7)), jnp.float32)
    for t in (targets, soft):
        expected = _sigmoid_focal_reference(logits, t, alpha, gamma)
        np.testing.assert_allclose(
            sigmoid_focal_loss(logits, t, alpha=alpha, gamma=gamma), expected, rtol=2e-5
        )


def test_focal_losses_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    logits = (3 * rng.normal(size=(6, 5))).astype(np.float32)
    targets = (rng.random((6, 5)) < 0.4).astype(np.float32)
    # torchvision.ops.sigmoid_focal_loss's formula, written with torch.
    x, t = torch.from_numpy(logits), torch.from_numpy(targets)
    p = torch.sigmoid(x)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    expected = (0.25 * t + 0.75 * (1 - t)) * ce * (1 - p_t) ** 2
    # torch's float32 `1 - p_t` cancels for confident predictions (losses ~1e-8), which
    # the log-space form does not: an absolute tolerance for those.
    np.testing.assert_allclose(
        sigmoid_focal_loss(jnp.asarray(logits), jnp.asarray(targets)), expected, rtol=1e-5, atol=1e-9
    )
    # Softmax focal: torch's cross-entropy weighted by (1 - p_t)^gamma.
    labels = rng.integers(0, 5, size=6)
    ce = torch.nn.functional.cross_entropy(x, torch.from_numpy(labels), reduction="none")
    p_t = torch.softmax(x, -1)[torch.arange(6), torch.from_numpy(labels)]
    expected = (1 - p_t) ** 1.5 * ce
    one_hot = jax.nn.one_hot(labels, 5)
    np.testing.assert_allclose(
        softmax_focal_loss(jnp.asarray(logits), one_hot, gamma=1.5), expected, rtol=1e-5
    )


def test_softmax_focal_loss_literal():
    # Probabilities [1/4, 1/4, 1/2].
    logits = jnp.log(jnp.array([[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]]))
    targets = jax.nn.one_hot(jnp.array([2, 0]), 3)
    loss = softmax_focal_loss(logits, targets)
    assert loss.shape == (2,) and loss.dtype == jnp.float32
    # (1 - 1/2)^2 log 2 and (1 - 1/4)^2 log 4.
    np.testing.assert_allclose(loss, [0.25 * math.log(2), 0.5625 * math.log(4)], rtol=1e-6)
    # Per-class alpha weighs each target's term: alpha_2 = 2, alpha_0 = 0.5.
    alpha = jnp.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(
        softmax_focal_loss(logits, targets, alpha=alpha),
        [0.5 * math.log(2), 0.5 * 0.5625 * math.log(4)],
        rtol=1e-6,
    )
    # gamma 0: the softmax cross-entropy.
    np.testing.assert_allclose(
        softmax_focal_loss(logits, targets, gamma=0.0), optax.losses.softmax_cross_entropy(logits, targets)
    )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5])
def test_softmax_focal_loss_matches_the_reference_formula(gamma):
    rng = np.random.default_rng(2)
    logits = jnp.asarray(3 * rng.normal(size=(2, 4, 6)), jnp.float32)
    hard = jax.nn.one_hot(rng.integers(0, 6, size=(2, 4)), 6)
    smoothed = optax.smooth_labels(hard, 0.2)
    soft = jax.nn.softmax(jnp.asarray(rng.normal(size=(2, 4, 6)), jnp.float32))
    alpha = jnp.asarray(rng.uniform(0.2, 1.0, size=6), jnp.float32)
    for targets in (hard, smoothed, soft):
        np.testing.assert_allclose(
            softmax_focal_loss(logits, targets, gamma=gamma),
            _softmax_focal_reference(logits, targets, gamma),
            rtol=2e-5,
        )
    np.testing.assert_allclose(
        softmax_focal_loss(logits, hard, gamma=gamma, alpha=alpha),
        _softmax_focal_reference(logits, hard, gamma, alpha),
        rtol=2e-5,
    )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_gradients_are_finite_for_extreme_and_certain_logits(gamma):
    logits = jnp.array([[1e4, -1e4, 0.0], [0.0, 30.0, -30.0], [0.0, 0.0, 0.0]])
    targets = jax.nn.one_hot(jnp.array([0, 2, 1]), 3)
    softmax_grad = jax.jit(jax.grad(lambda z: softmax_focal_loss(z, targets, gamma=gamma).sum()))(logits)
    sigmoid_grad = jax.jit(jax.grad(lambda z: sigmoid_focal_loss(z, targets, gamma=gamma).sum()))(logits)
    assert np.isfinite(softmax_grad).all() and np.isfinite(sigmoid_grad).all()
    # The certain, right prediction (row 0) learns nothing; the confidently wrong one does.
    np.testing.assert_array_equal(softmax_grad[0], 0.0)
    assert np.abs(softmax_grad[1]).sum() > 0.5


def test_focal_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    targets = jax.nn.one_hot(jnp.array([0, 3, 1]), 4)
    for loss in (
        lambda z: softmax_focal_loss(z, targets, gamma=2.0).sum(),
        lambda z: sigmoid_focal_loss(z, targets, gamma=2.0).sum(),
    ):
        grad = jax.jit(jax.grad(loss))(logits)
        direction = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
        eps = 1e-2
        loss = jax.jit(loss)
        numeric = (loss(logits + eps * direction) - loss(logits - eps * direction)) / (2 * eps)
        np.testing.assert_allclose(jnp.sum(grad * direction), numeric, rtol=1e-3)


def test_jit_matches_eager():
    rng = np.random.default_rng(4)
    logits = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    targets = jax.nn.one_hot(jnp.array([0, 1, 4, 2]), 5)
    probabilities = jax.nn.sigmoid(logits)
    for fn, args in [
        (lambda z, t: sigmoid_focal_loss(z, t, alpha=0.3, gamma=1.5), (logits, targets)),
        (lambda z, t: softmax_focal_loss(z, t, gamma=1.5), (logits, targets)),
        (lambda p, t: dice_loss(p, t, smooth=0.5), (probabilities, targets)),
        (l1_loss, (logits, targets)),
    ]:
        np.testing.assert_allclose(jax.jit(fn)(*args), fn(*args), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 1.5}, r"`alpha` must be None \(no balancing\) or a number in \[0, 1\]. Received: 1.5."),
        ({"alpha": -0.1}, r"`alpha` .* Received: -0.1."),
        ({"gamma": -1.0}, r"`gamma` must be a finite number >= 0. Received: -1.0."),
        ({"gamma": float("inf")}, r"`gamma` must be a finite number >= 0. Received: inf."),
    ],
)
def test_bad_focal_arguments(kwargs, match):
    logits, targets = jnp.zeros((2, 3)), jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=match):
        sigmoid_focal_loss(logits, targets, **kwargs)
    if "gamma" in kwargs:
        with pytest.raises(ValueError, match=match):
            softmax_focal_loss(logits, targets, **kwargs)


def test_shape_mismatch_raises_instead_of_broadcasting(without_annotation_checks):
    match = r"`targets` must have the shape of `logits`, \(2, 3\): no broadcasting .* Received: shape \(3,\)."
    with pytest.raises(ValueError, match=match):
        sigmoid_focal_loss(jnp.zeros((2, 3)), jnp.zeros(3))
    with pytest.raises(ValueError, match=match):
        softmax_focal_loss(jnp.zeros((2, 3)), jnp.zeros(3))
    with pytest.raises(ValueError, match=r"`targets` must have the shape of `predictions`, \(2, 3\)"):
        l1_loss(jnp.zeros((2, 3)), jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"`weights` must have the shape of `probabilities`, \(2, 3\)"):
        dice_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), weights=jnp.ones(3))


def test_dice_loss_literal():
    probabilities = jnp.array([[0.5, 0.5, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    targets = jnp.array([[1, 0, 1, 0], [0, 0, 0, 0]])
    loss = dice_loss(probabilities, targets)
    assert loss.shape == (2,) and loss.dtype == jnp.float32
    # Row 0: overlap 0.5 + 1 = 1.5, sums 2 and 2: 1 - (3 + 1) / (4 + 1) = 0.2. Row 1: an
    # empty prediction of an empty mask, 1 - 1/1 = 0.
    np.testing.assert_allclose(loss, [0.2, 0.0], rtol=1e-6)
    # Weights: dropping the second point leaves overlap 1.5, sums 1.5 and 2:
    # 1 - (3 + 0.5) / (3.5 + 0.5) = 0.125 with smooth 0.5.
    weights = jnp.array([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(dice_loss(probabilities, targets, weights=weights, smooth=0.5), [0.125, 0.0])
    with pytest.raises(ValueError, match=r"`smooth` must be a finite number > 0. Received: 0.0."):
        dice_loss(probabilities, targets, smooth=0.0)


def test_dice_loss_matches_optax():
    rng = np.random.default_rng(5)
    # Multi-class: softmax over classes, Dice of each class over the pixels, mean over
    # classes. optax adds `smooth` to `intersection + (P + T - 2 I) / 2`, half the
    # denominator here: its smooth 0.5 is this smooth 1.
    logits = jnp.asarray(2 * rng.normal(size=(3, 4, 5, 6)), jnp.float32)
    one_hot = jax.nn.one_hot(rng.integers(0, 6, size=(3, 4, 5)), 6)
    expected = optax.losses.dice_loss(logits, one_hot, smooth=0.5)
    by_class = lambda x: jnp.moveaxis(x.reshape(3, 20, 6), -1, 1)  # noqa: E731
    ours = dice_loss(by_class(jax.nn.softmax(logits)), by_class(one_hot)).mean(-1)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    # Binary masks (DETR's panoptic form): sigmoid of the mask logits.
    mask_logits = jnp.asarray(2 * rng.normal(size=(4, 30)), jnp.float32)
    masks = jnp.asarray(rng.random((4, 30)) < 0.4, jnp.float32)
    expected = optax.losses.dice_loss(mask_logits[..., None], masks[..., None], smooth=0.5)
    np.testing.assert_allclose(dice_loss(jax.nn.sigmoid(mask_logits), masks), expected, rtol=1e-5)


def test_dice_points_of_weight_zero_equal_slicing_them_out():
    rng = np.random.default_rng(6)
    probabilities = jnp.asarray(rng.random((3, 10)), jnp.float32)
    targets = jnp.asarray(rng.random((3, 10)) < 0.5, jnp.float32)
    keep = jnp.arange(10) < 7
    weights = jnp.broadcast_to(keep.astype(jnp.float32), (3, 10))
    np.testing.assert_allclose(
        dice_loss(probabilities, targets, weights=weights),
        dice_loss(probabilities[:, :7], targets[:, :7]),
        rtol=1e-6,
    )


def test_l1_losses_literal():
    predictions, targets = jnp.array([[1.0, -2.0], [0.5, 0.0]]), jnp.array([[0.0, 1.0], [0.5, -0.25]])
    np.testing.assert_allclose(l1_loss(predictions, targets), [[1.0, 3.0], [0.0, 0.25]])
    predicted = jnp.array([[0.2, 0.2, 0.6, 0.6], [0.0, 0.0, 1.0, 1.0]])
    target = jnp.array([[0.1, 0.3, 0.5, 0.8], [0.1, 0.3, 0.5, 0.8]])
    # Tight: |0.1| + |0.1| + |0.1| + |0.2| and 0.1 + 0.3 + 0.5 + 0.2.
    np.testing.assert_allclose(box_l1_loss(predicted, target), [0.5, 1.1], rtol=1e-6)
    # Loose: only edges outside the target cost. Box 0: x0 0.2 inside (0), y0 0.2 outside
    # (0.1), x1 0.6 outside (0.1), y1 0.6 inside (0). Box 1 contains the target: all 4.
    np.testing.assert_allclose(box_l1_loss(predicted, target, tight=False), [0.2, 1.1], rtol=1e-6)
    # A predicted box inside its target costs nothing.
    assert box_l1_loss(target[:1] + jnp.array([[0.01, 0.01, -0.01, -0.01]]), target[:1], tight=False) == 0.0


def test_box_l1_loss_broadcasts_to_pairwise_costs():
    rng = np.random.default_rng(7)
    predicted = jnp.asarray(rng.random((2, 5, 4)), jnp.float32)
    target = jnp.asarray(rng.random((2, 3, 4)), jnp.float32)
    pairwise = box_l1_loss(predicted[:, :, None, :], target[:, None, :, :])
    assert pairwise.shape == (2, 5, 3)
    expected = np.abs(np.asarray(predicted)[:, :, None] - np.asarray(target)[:, None]).sum(-1)
    np.testing.assert_allclose(pairwise, expected, rtol=1e-6)
