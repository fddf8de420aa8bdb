"""Mixup and CutMix: batch augmentations that mix each example with another one.

Each op pairs example `i` with example `batch_size - 1 - i` (the batch reversed, as
Scenic does), draws one mixing ratio `lam ~ Beta(alpha, alpha)` for the whole batch and
mixes inputs and labels alike. They run in numpy on the host when `key` is a
`np.random.Generator`, and in JAX (jittable, on the device) when `key` is a JAX PRNG
key. Labels may be integer classes `[batch]` (then give `num_classes`) or one-hot/soft
`[batch, num_classes]`; the result's `label` is always float32 `[batch, num_classes]`.
Other entries of the batch (`batch_mask`, ...) pass through unchanged. Meant for
training batches, which carry no padding.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Batch = dict[str, Any]


def _is_numpy(key) -> bool:
    if isinstance(key, np.random.Generator):
        return True
    if isinstance(key, jax.Array):
        return False
    raise TypeError(
        f"`key` (={key!r}) must be a `np.random.Generator` (numpy, on the host) or a JAX "
        "PRNG key (on the device)."
    )


def _check_alpha(alpha: object) -> None:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        raise ValueError(f"`alpha` (={alpha!r}) must be a positive number.")


def _soft_labels(xp, label, num_classes: int | None):
    if label.ndim == 2:
        return label.astype(xp.float32)
    if label.ndim == 1 and num_classes is not None:
        return (label[:, None] == xp.arange(num_classes)[None, :]).astype(xp.float32)
    raise ValueError(
        f'`batch["label"]` of shape {label.shape} must be one-hot `[batch, num_classes]`, '
        "or integer `[batch]` with `num_classes` given."
    )


def _mix_labels(xp, batch: Batch, lam, num_classes):
    label = _soft_labels(xp, xp.asarray(batch["label"]), num_classes)
    return lam * label + (1.0 - lam) * label[::-1]


def mixup(batch: Batch, *, alpha: int | float = 0.2, key, num_classes: int | None = None) -> Batch:
    """Mixup: `lam * x + (1 - lam) * x_reversed`, for inputs and labels.

    Arguments:
        batch: `inputs` `[batch, ...]`, `label` `[batch]` (integer) or
            `[batch, num_classes]`, and any other entries.
        alpha: the Beta distribution's parameter.
        key: a `np.random.Generator` (numpy) or a JAX PRNG key (JAX).
        num_classes: needed for integer labels.

    Returns:
        The batch with mixed float32 `inputs` and `label` `[batch, num_classes]`.

    Reference: Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.
    """
    _check_alpha(alpha)
    xp = np if _is_numpy(key) else jnp
    if xp is np:
        lam = np.float32(key.beta(alpha, alpha))
    else:
        lam = jax.random.beta(key, alpha, alpha)
    inputs = xp.asarray(batch["inputs"]).astype(xp.float32)
    mixed = lam * inputs + (1.0 - lam) * inputs[::-1]
    return {**batch, "inputs": mixed, "label": _mix_labels(xp, batch, lam, num_classes)}


def cutmix(batch: Batch, *, alpha: int | float = 1.0, key, num_classes: int | None = None) -> Batch:
    """CutMix: pastes a box of the reversed batch's images; labels mix by the box's area.

    The box has `1 - lam` of the image's area and the image's aspect ratio, a uniform
    random centre, and is clipped at the borders; the labels mix by the area actually
    kept, `1 - box_area / image_area`.

    Arguments:
        batch: `inputs` `[batch, height, width, channels]`, `label` `[batch]`
            (integer) or `[batch, num_classes]`, and any other entries.
        alpha: the Beta distribution's parameter.
        key: a `np.random.Generator` (numpy) or a JAX PRNG key (JAX).
        num_classes: needed for integer labels.

    Returns:
        The batch with pasted `inputs` (input dtype) and float32 `label`
        `[batch, num_classes]`.

    Reference: Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers
    with Localizable Features", ICCV 2019.
    """
    _check_alpha(alpha)
    xp = np if _is_numpy(key) else jnp
    inputs = xp.asarray(batch["inputs"])
    if inputs.ndim != 4:
        raise ValueError(
            f'`batch["inputs"]` must be images `[batch, height, width, channels]`; got shape {inputs.shape}.'
        )
    height, width = inputs.shape[1:3]
    if xp is np:
        lam = key.beta(alpha, alpha)
        center = key.uniform(size=2) * np.array([height, width])
    else:
        lam_key, center_key = jax.random.split(key)
        lam = jax.random.beta(lam_key, alpha, alpha)
        center = jax.random.uniform(center_key, (2,)) * jnp.array([height, width], jnp.float32)
    size = xp.asarray([height, width], dtype=center.dtype)  # no int/float mixing
    cut = xp.sqrt(1.0 - lam) * size
    low = xp.clip(xp.round(center - cut / 2), 0, size).astype(xp.int32)
    high = xp.clip(xp.round(center + cut / 2), 0, size).astype(xp.int32)
    rows = xp.arange(height)[:, None]
    cols = xp.arange(width)[None, :]
    box = (rows >= low[0]) & (rows < high[0]) & (cols >= low[1]) & (cols < high[1])
    pasted = xp.where(box[None, :, :, None], inputs[::-1], inputs)
    kept = 1.0 - xp.prod(high - low).astype(xp.float32) / (height * width)
    label = _mix_labels(xp, batch, kept, num_classes)
    return {**batch, "inputs": pasted, "label": label}
