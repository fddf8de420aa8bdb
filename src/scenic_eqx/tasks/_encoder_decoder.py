"""Sequence-to-sequence prediction: per-token softmax cross-entropy over real tokens."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from ._classification import _TINY, batch_mask, check_smoothing
from ._label_checks import check_classes, get_label
from ._task import AbstractTask, Batch, Metrics


class EncoderDecoderTask(AbstractTask):
    """Next-token prediction for encoder-decoder (or decoder-only) models.

    Outputs are logits `[batch, target_len, vocab]`; `batch["label"]` holds the target
    token ids `[batch, target_len]`. A token weighs one when it is not `pad_id` and its
    example is real (`batch["batch_mask"]` 1, all ones when absent), else zero. The loss
    is the mean softmax cross-entropy over the real tokens of the batch.

    Metrics: `token_accuracy`; `sequence_accuracy` (every real token of a real example
    right; an example without real tokens counts as right); `loss` (the training loss,
    label smoothing included) and `nll` (the negative log-likelihood, without smoothing)
    per real token. `summarize` adds `perplexity`, `exp(nll)` over the whole run: the
    exponential of a mean, not a mean of ratios, so it comes from the summed `nll`.

    Arguments:
        pad_id: the padding token id of the labels.
        label_smoothing: mass moved from the targets onto the uniform distribution,
            in `[0, 1)`. Szegedy et al., "Rethinking the Inception Architecture for
            Computer Vision", CVPR 2016; used for translation by Vaswani et al. 2017.
    """

    pad_id: int = 0
    label_smoothing: float = 0.0

    def __check_init__(self):
        check_smoothing(self.label_smoothing)

    def token_weights(
        self, outputs: Float[Array, "batch target_len vocab"], batch: Batch
    ) -> Float[Array, "batch target_len"]:
        """1.0 for the real tokens of real examples, 0.0 for padding tokens or examples."""
        batch_size, target_len, _ = outputs.shape
        label = jnp.asarray(get_label(batch, "EncoderDecoderTask"))
        if label.shape != (batch_size, target_len):
            raise ValueError(
                f'`batch["label"]` must have shape {(batch_size, target_len)}, to match logits '
                f"of shape {outputs.shape}. Received: shape {label.shape}."
            )
        if not jnp.issubdtype(label.dtype, jnp.integer):
            raise ValueError(f'`batch["label"]` must hold integer token ids. Received: dtype {label.dtype}.')
        real = (label != self.pad_id).astype(jnp.float32)
        return real * batch_mask(batch, batch_size)[:, None]

    def per_token_loss(
        self, outputs: Float[Array, "batch target_len vocab"], batch: Batch
    ) -> tuple[Float[Array, "batch target_len"], Float[Array, "batch target_len"]]:
        """Softmax cross-entropy of every token, with and without label smoothing.

        Returns:
            `(loss, nll)`, float32 `[batch, target_len]`, padding included.
        """
        logits = outputs.astype(jnp.float32)
        targets = jax.nn.one_hot(batch["label"], logits.shape[-1], dtype=jnp.float32)
        nll = optax.losses.softmax_cross_entropy(logits, targets)
        # alpha = 0 leaves the targets unchanged: no Python branch on a field that may
        # be traced when the task is passed through `jax.jit`.
        smoothed = optax.smooth_labels(targets, self.label_smoothing)
        return optax.losses.softmax_cross_entropy(logits, smoothed), nll

    def loss(self, outputs: Float[Array, "batch target_len vocab"], batch: Batch) -> Float[Array, ""]:
        """The mean per-token cross-entropy over the real tokens of the batch.

        Arguments:
            outputs: logits `[batch, target_len, vocab]`.
            batch: the batch dict with `label` `[batch, target_len]` and optionally
                `batch_mask` `[batch]`.

        Returns:
            A float32 scalar; 0 when the batch has no real token.
        """
        weights = self.token_weights(outputs, batch)
        loss, _ = self.per_token_loss(outputs, batch)
        loss = jnp.sum(loss * weights) / jnp.maximum(jnp.sum(weights), _TINY)
        return self._check_tokens(loss, outputs, batch, weights)

    def _check_tokens(self, results, outputs, batch: Batch, weights):
        # One-hot of an id outside the vocabulary is all zeros: the token would count
        # in the normaliser and teach nothing. Padding tokens and examples may hold anything.
        return check_classes(
            results,
            batch["label"],
            weights > 0,
            outputs.shape[-1],
            unit="token ids",
            extra=" or `pad_id`, on real tokens (the ones that count)",
        )

    def metrics(self, outputs: Float[Array, "batch target_len vocab"], batch: Batch) -> Metrics:
        """`token_accuracy`, `sequence_accuracy`, `loss` and `nll`.

        Arguments:
            outputs: logits `[batch, target_len, vocab]`.
            batch: the batch dict with `label` and optionally `batch_mask`.

        Returns:
            `{name: (value_sum, normalizer)}`, float32 scalars: token metrics are
            normalised by the number of real tokens, `sequence_accuracy` by the number
            of real examples.
        """
        weights = self.token_weights(outputs, batch)
        num_tokens = jnp.sum(weights)
        loss, nll = self.per_token_loss(outputs, batch)
        right = jnp.argmax(outputs, axis=-1) == batch["label"]
        # A sequence is right when none of its real tokens is wrong.
        wrong_tokens = jnp.sum(jnp.where(right, 0.0, weights), axis=-1)
        mask = batch_mask(batch, outputs.shape[0])
        sequence_right = (wrong_tokens == 0).astype(jnp.float32) * mask
        metrics = {
            "token_accuracy": (jnp.sum(right.astype(jnp.float32) * weights), num_tokens),
            "sequence_accuracy": (jnp.sum(sequence_right), jnp.sum(mask)),
            "loss": (jnp.sum(loss * weights), num_tokens),
            "nll": (jnp.sum(nll * weights), num_tokens),
        }
        return self._check_tokens(metrics, outputs, batch, weights)

    def summarize(self, totals: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        """The ratios of `AbstractTask.summarize`, plus `perplexity = exp(nll)`."""
        results = super().summarize(totals)
        if "nll" in results:
            results["perplexity"] = float(np.exp(results["nll"]))
        return results
