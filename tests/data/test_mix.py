"""Mixup and CutMix, in numpy and in JAX: the mixing rule and the ratio's distribution."""

import jax
import numpy as np
import pytest

from scenic_eqx.data import cutmix, mixup

B, H, W, K = 4, 6, 8, 5
# Example i is the constant image i + 1 with class i: mixing is readable from the pixels.
BATCH = {
    "inputs": np.broadcast_to(np.arange(1, B + 1, dtype=np.float32)[:, None, None, None], (B, H, W, 1)),
    "label": np.arange(B, dtype=np.int32),
    "batch_mask": np.ones(B, np.float32),
}


def _lam(out):
    # Example 0's own class keeps weight lam; its partner (class B - 1) gets 1 - lam.
    return float(np.asarray(out["label"])[0, 0])


def _check_mixup(out, backend):
    lam = _lam(out)
    assert isinstance(out["inputs"], backend) and out["label"].shape == (B, K)
    assert out["label"].dtype == np.float32
    expected = lam * BATCH["inputs"] + (1 - lam) * BATCH["inputs"][::-1]
    np.testing.assert_allclose(out["inputs"], expected, rtol=1e-5)
    onehot = np.eye(K, dtype=np.float32)[BATCH["label"]]
    np.testing.assert_allclose(out["label"], lam * onehot + (1 - lam) * onehot[::-1], atol=1e-6)
    np.testing.assert_allclose(out["label"].sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out["batch_mask"], BATCH["batch_mask"])


def _check_beta_moments(lams, alpha):
    lams = np.asarray(lams)
    n = len(lams)
    mean, var = 0.5, 1 / (4 * (2 * alpha + 1))  # Beta(alpha, alpha)
    assert abs(lams.mean() - mean) <= 5 * np.sqrt(var / n), lams.mean()
    assert abs(lams.var() - var) <= 0.25 * var, lams.var()


def test_mixup_numpy_mixes_inputs_and_labels_by_one_beta_ratio():
    rng = np.random.default_rng(0)
    lams = []
    for _ in range(2000):
        out = mixup(BATCH, alpha=0.4, key=rng, num_classes=K)
        lams.append(_lam(out))
    _check_mixup(out, np.ndarray)
    _check_beta_moments(lams, 0.4)
    assert BATCH["label"].ndim == 1  # the input is left alone


def test_mixup_jax_under_jit(getkey):
    fn = jax.jit(lambda batch, key: mixup(batch, alpha=0.4, key=key, num_classes=K))
    out = fn(BATCH, getkey())
    _check_mixup(jax.tree.map(np.asarray, out), np.ndarray)
    assert isinstance(out["inputs"], jax.Array)
    # The ratio's distribution (no new compilation: same shapes).
    _check_beta_moments([_lam(fn(BATCH, key)) for key in jax.random.split(getkey(), 200)], 0.4)


def test_mixup_accepts_one_hot_labels():
    batch = {**BATCH, "label": np.eye(K, dtype=np.float32)[BATCH["label"]]}
    _check_mixup(mixup(batch, alpha=1.0, key=np.random.default_rng(0)), np.ndarray)


def _check_cutmix(out):
    inputs, label = np.asarray(out["inputs"]), np.asarray(out["label"])
    assert inputs.shape == (B, H, W, 1) and label.shape == (B, K)
    pasted = inputs[0, ..., 0] != 1.0  # example 0 holds 1s; pasted pixels hold B
    assert set(np.unique(inputs[0])) <= {1.0, float(B)}
    rows, cols = np.nonzero(pasted)
    if rows.size:  # the pasted pixels form one rectangle
        assert pasted[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    # Every example gets the same box; labels weigh the pixels actually kept.
    np.testing.assert_array_equal(inputs[1, ..., 0] != 2.0, pasted)
    kept = 1.0 - pasted.mean()
    np.testing.assert_allclose(label[0, 0], kept, rtol=1e-6)
    np.testing.assert_allclose(label[0, B - 1], 1 - kept, rtol=1e-6)
    return kept


def test_cutmix_numpy_and_jax_paste_one_box(getkey):
    rng = np.random.default_rng(0)
    kept = [_check_cutmix(cutmix(BATCH, alpha=1.0, key=rng, num_classes=K)) for _ in range(200)]
    fn = jax.jit(lambda batch, key: cutmix(batch, alpha=1.0, key=key, num_classes=K))
    kept += [_check_cutmix(fn(BATCH, getkey())) for _ in range(50)]
    kept = np.array(kept)
    # lam ~ Beta(1, 1) is uniform, and clipping only shrinks the box: the kept fraction
    # covers (0, 1) and is at least 1/2 on average.
    assert kept.min() < 0.2 and kept.max() > 0.95 and 0.5 <= kept.mean() < 0.8
    assert cutmix(BATCH, alpha=1.0, key=rng, num_classes=K)["inputs"].dtype == np.float32


@pytest.mark.parametrize("op", [mixup, cutmix])
def test_bad_arguments(op):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"`alpha` \(=0\) must be a positive number"):
        op(BATCH, alpha=0, key=rng, num_classes=K)
    with pytest.raises(TypeError, match=r"`key` \(=3\) must be a `np.random.Generator`"):
        op(BATCH, key=3, num_classes=K)
    with pytest.raises(ValueError, match=r"shape \(4,\) must be one-hot .*with `num_classes`"):
        op(BATCH, key=rng)


def test_cutmix_needs_images():
    batch = {**BATCH, "inputs": np.zeros((B, 10))}
    with pytest.raises(ValueError, match=r"must be images .*got shape \(4, 10\)"):
        cutmix(batch, key=np.random.default_rng(0), num_classes=K)
