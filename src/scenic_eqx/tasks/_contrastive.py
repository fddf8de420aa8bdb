"""Contrastive image-text training: CLIP's symmetric InfoNCE or SigLIP's sigmoid loss."""

import math
import numbers
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float, Int, PyTree

from ._classification import batch_mask, masked_mean, masked_sum
from ._retrieval_evaluator import RetrievalEvaluator, as_tuple, check_recall_at
from ._task import AbstractTask, Batch, Metrics

LOSS_TYPES = ("softmax", "sigmoid")
_EMBEDDINGS = ("image_embedding", "text_embedding")
# Squared norms below this are clipped before dividing: a zero embedding (a padding
# row) normalises to zero, with a finite gradient.
_TINY_SQUARED_NORM = 1e-12


def l2_normalize(x: Float[Array, "batch dim"]) -> Float[Array, "batch dim"]:
    """Each row divided by its L2 norm, in float32; a zero row stays zero."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), _TINY_SQUARED_NORM))


def _one_scalar(outputs: Mapping, name: str, batch_size: int) -> Float[Array, ""]:
    """`outputs[name]`, a scalar or one equal copy per example (as a vmapped model gives it)."""
    value = jnp.asarray(outputs[name])
    if value.shape not in ((), (batch_size,)):
        raise ValueError(
            f'`outputs["{name}"]` must be a scalar, or one copy per example of shape '
            f"({batch_size},) as a vmapped model returns it. Received: shape {value.shape}."
        )
    # The copies are one parameter's: the first is it (its gradient reaches the parameter).
    return (value if value.ndim == 0 else value[0]).astype(jnp.float32)


def _embeddings(
    outputs: PyTree, needs_bias: bool
) -> tuple[Float[Array, "batch dim"], Float[Array, "batch dim"]]:
    """The image and text embeddings, checked to be `[batch, dim]` of one shape."""
    required = (*_EMBEDDINGS, "logit_scale") + (("logit_bias",) if needs_bias else ())
    if not isinstance(outputs, Mapping) or any(name not in outputs for name in required):
        received = sorted(map(str, outputs)) if isinstance(outputs, Mapping) else type(outputs).__name__
        hint = (
            " (the sigmoid loss with `sigmoid_bias=None` reads the model's learned bias; give "
            "a fixed `sigmoid_bias` for a model without one)"
            if needs_bias
            else ""
        )
        raise ValueError(
            f"`outputs` must be a dict with {', '.join(map(repr, required))}{hint}. Received: {received}."
        )
    images, texts = (jnp.asarray(outputs[name]) for name in _EMBEDDINGS)
    if images.ndim != 2 or images.shape != texts.shape:
        raise ValueError(
            '`outputs["image_embedding"]` and `outputs["text_embedding"]` must both be '
            f"[batch, dim], of one shape. Received: shapes {images.shape} and {texts.shape}."
        )
    return images, texts


def _ranks(
    logits: Float[Array, "anchors candidates"], real: Bool[Array, " candidates"]
) -> Int[Array, " anchors"]:
    """For each anchor `i`, how many real candidates score above its own, `i`.

    Ties count in the pair's favour: a candidate identical to the anchor's own (the
    same caption twice) does not push it down.
    """
    own = jnp.diagonal(logits)[:, None]
    return jnp.sum((logits > own) & real[None, :], axis=1)


class ContrastiveTask(AbstractTask):
    """Contrastive image-text pairs: example `i`'s image and text are a positive pair, and
    every other real example of the batch gives the negatives.

    Outputs are `{"image_embedding": [batch, dim], "text_embedding": [batch, dim],
    "logit_scale": scalar or [batch]}`, as `nn.CLIP` returns them under `vmap`. The task
    L2-normalises the embeddings and multiplies their cosine similarities by
    `exp(logit_scale)` (clipped at `max_scale`), so `logit_scale` is the learned
    log-inverse-temperature. No label is read: the positives are on the diagonal.

    - `loss_type="softmax"`: CLIP's symmetric InfoNCE (Radford et al., "Learning
      Transferable Visual Models From Natural Language Supervision", ICML 2021), the mean
      of the image->text and text->image cross-entropies of the `[batch, batch]`
      similarity logits, example `i`'s target being `i`.
    - `loss_type="sigmoid"`: SigLIP (Zhai et al., "Sigmoid Loss for Language Image
      Pre-Training", ICCV 2023): every pair `(i, j)` is an independent binary
      classification of `exp(logit_scale) * cos(i, j) + bias`, positive iff `i == j`;
      the loss is the sum over `j` averaged over the images `i`. The bias is learned:
      like the scale, it is a parameter of the model, which returns it as
      `outputs["logit_bias"]` (as big_vision's two-tower model does; the paper starts it
      at -10 and the scale at log 10). A model without one takes a fixed `sigmoid_bias`.

    **The batch is global.** Under `loops.fit` the loss runs inside `jax.jit` on the
    global batch, its rows split over the mesh's `"data"` axis (across hosts too:
    `loops.shard_batch` assembles each host's rows into global arrays). The product
    `images @ texts.T` of two row-split matrices makes XLA gather the other devices'
    text embeddings, so each device holds its rows of the whole `[global batch, global
    batch]` matrix: every example is contrasted with the negatives of every device, and
    the positive of example `i` is at its global index `i`. Gradients flow back through
    the gather. The loss on 8 devices is the loss on one (tests/tasks/test_contrastive.py).
    With `accumulate_steps=k` the step splits the batch into `k` micro-batches and each
    one is contrasted within itself (fewer negatives per example).

    **Padding** (`batch_mask` 0) is neither an anchor nor a negative: its rows carry no
    weight and its columns are left out of every softmax (and every sigmoid pair). An
    all-padding batch gives a loss of 0 with zero gradients.

    Metrics (`(value_sum, normalizer)` over real examples): `loss`; `scale`, the
    multiplier `exp(logit_scale)`; `bias` with the sigmoid loss; `in_batch_image_to_text_recall_at_<k>` and
    `in_batch_text_to_image_recall_at_<k>` for each `k` of `recall_at`: whether the
    pair's own text (image) is among the `k` best of the batch's. These depend on the
    batch (the pool of candidates grows with it). Evaluations (`loops.evaluate`, `fit`'s
    `eval_batches`) also report `image_to_text_recall_at_<k>` and
    `text_to_image_recall_at_<k>` over the whole evaluation set, from the task's
    `RetrievalEvaluator`: exact whatever the batch size.

    Arguments:
        loss_type: `"softmax"` (CLIP) or `"sigmoid"` (SigLIP).
        recall_at: the `k`s of the recall metrics (positive integers; `()` for none).
        sigmoid_bias: with `loss_type="sigmoid"`: `None` (the default) reads the learned
            bias from `outputs["logit_bias"]` (a scalar or `[batch]`, like
            `logit_scale`); a number is a fixed bias for a model that has none.
        max_scale: `exp(logit_scale)` is clipped at this value (CLIP clips it at 100, to
            keep training stable); `None` leaves it unclipped.
    """

    loss_type: str = "softmax"
    recall_at: tuple[int, ...] = eqx.field(default=(1, 5), converter=as_tuple)
    sigmoid_bias: float | None = None
    max_scale: float | None = 100.0

    def __check_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"`loss_type` must be one of {LOSS_TYPES}. Received: {self.loss_type!r}.")
        check_recall_at(self.recall_at)
        for name in ("sigmoid_bias", "max_scale"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            ):
                raise ValueError(f"`{name}` must be None or a finite number. Received: {value!r}.")
        if self.max_scale is not None and self.max_scale <= 0:
            raise ValueError(f"`max_scale` must be positive (or None). Received: {self.max_scale!r}.")
        if self.sigmoid_bias is not None and self.loss_type != "sigmoid":
            raise ValueError(
                "`sigmoid_bias` applies to `loss_type='sigmoid'` only. Received: "
                f"sigmoid_bias={self.sigmoid_bias!r} with loss_type={self.loss_type!r}."
            )

    def _scale(self, outputs: Mapping, batch_size: int) -> Float[Array, ""]:
        scale = jnp.exp(_one_scalar(outputs, "logit_scale", batch_size))
        return scale if self.max_scale is None else jnp.minimum(scale, self.max_scale)

    def logits(self, outputs: PyTree, batch: Batch) -> Float[Array, "batch batch"]:
        """The similarity logits: row `i` scores image `i` against every text.

        `exp(logit_scale) * cos(image_i, text_j)`, plus the bias with the sigmoid loss.
        The embeddings of padding examples are taken as zeros, whatever they hold (NaN
        included): their rows and columns are then finite, and carry no weight anyway.

        Arguments:
            outputs: the model's outputs, as described in the class docstring.
            batch: the batch dict; only `batch_mask` (optional) is read.

        Returns:
            Float32 `[batch, batch]`, the positives on the diagonal.
        """
        sigmoid = self.loss_type == "sigmoid"
        images, texts = _embeddings(outputs, needs_bias=sigmoid and self.sigmoid_bias is None)
        batch_size = images.shape[0]
        real = batch_mask(batch, batch_size)[:, None] > 0
        images, texts = (l2_normalize(jnp.where(real, x, 0.0)) for x in (images, texts))
        logits = self._scale(outputs, batch_size) * (images @ texts.T)
        if sigmoid:
            bias = self.sigmoid_bias
            logits = logits + (_one_scalar(outputs, "logit_bias", batch_size) if bias is None else bias)
        return logits

    def per_example_loss(self, outputs: PyTree, batch: Batch) -> Float[Array, " batch"]:
        """Each example's share of the loss; padding examples' values carry no weight.

        Softmax: the mean of its image->text and text->image cross-entropies. Sigmoid:
        the sum of its image's binary losses against every real text.

        Arguments:
            outputs: the model's outputs, as described in the class docstring.
            batch: the batch dict; only `batch_mask` is read.

        Returns:
            Float32 `[batch]`, finite (0 for a padding example under the sigmoid loss).
        """
        logits = self.logits(outputs, batch)
        return self._losses(logits, batch_mask(batch, logits.shape[0]) > 0)

    def _losses(
        self, logits: Float[Array, "batch batch"], real: Bool[Array, " batch"]
    ) -> Float[Array, " batch"]:
        """`per_example_loss` from the logits and which examples are real."""
        batch_size = logits.shape[0]
        diagonal = jnp.eye(batch_size, dtype=bool)
        if self.loss_type == "sigmoid":
            pairs = real[:, None] & real[None, :]
            losses = optax.losses.sigmoid_binary_cross_entropy(logits, diagonal.astype(jnp.float32))
            return jnp.sum(jnp.where(pairs, losses, 0.0), axis=1)
        # Padding candidates are left out of every softmax. A padding anchor keeps its
        # own pair, so that its row (weighted 0) is never empty: finite with no NaN gradient.
        candidates = real[None, :] | diagonal
        targets = jnp.arange(batch_size)
        image_to_text = optax.losses.softmax_cross_entropy_with_integer_labels(
            logits, targets, where=candidates
        )
        text_to_image = optax.losses.softmax_cross_entropy_with_integer_labels(
            logits.T, targets, where=candidates
        )
        return 0.5 * (image_to_text + text_to_image)

    def loss(self, outputs: PyTree, batch: Batch) -> Float[Array, ""]:
        """The mean of `per_example_loss` over the real examples of the (global) batch.

        Arguments:
            outputs: the model's outputs, as described in the class docstring.
            batch: the batch dict; only `batch_mask` (optional) is read.

        Returns:
            A float32 scalar; 0 for an all-padding batch.
        """
        mask = batch_mask(batch, self._batch_size(outputs))
        return masked_mean(self.per_example_loss(outputs, batch), mask)

    def metrics(self, outputs: PyTree, batch: Batch) -> Metrics:
        """`loss`, `scale`, `bias` (sigmoid) and the in-batch recalls, summed over the real examples.

        Arguments:
            outputs: the model's outputs, as described in the class docstring.
            batch: the batch dict; only `batch_mask` (optional) is read.

        Returns:
            `{name: (value_sum, normalizer)}`, float32 scalars; the normalizer is the
            number of real examples.
        """
        batch_size = self._batch_size(outputs)
        mask = batch_mask(batch, batch_size)
        real = mask > 0
        logits = self.logits(outputs, batch)
        metrics = {
            "loss": masked_sum(self._losses(logits, real), mask),
            "scale": masked_sum(jnp.broadcast_to(self._scale(outputs, batch_size), (batch_size,)), mask),
        }
        if self.loss_type == "sigmoid":
            bias = self.sigmoid_bias
            bias = _one_scalar(outputs, "logit_bias", batch_size) if bias is None else jnp.float32(bias)
            metrics["bias"] = masked_sum(jnp.broadcast_to(bias, (batch_size,)), mask)
        ranks = {"image_to_text": _ranks(logits, real), "text_to_image": _ranks(logits.T, real)}
        for direction, rank in ranks.items():
            for k in self.recall_at:
                metrics[f"in_batch_{direction}_recall_at_{k}"] = masked_sum(
                    (rank < k).astype(jnp.float32), mask
                )
        return metrics

    def make_evaluator(self) -> RetrievalEvaluator | None:
        """A `RetrievalEvaluator` of the recalls over a whole evaluation set (`None`
        without `recall_at`)."""
        return RetrievalEvaluator(self.recall_at) if self.recall_at else None

    def evaluator_inputs(self, outputs: PyTree, batch: Batch) -> dict[str, Array]:
        """The L2-normalised embeddings and `batch_mask`, for the `RetrievalEvaluator`."""
        images, texts = _embeddings(outputs, needs_bias=False)
        mask = batch_mask(batch, images.shape[0])
        return {
            "image_embedding": l2_normalize(jnp.where(mask[:, None] > 0, images, 0.0)),
            "text_embedding": l2_normalize(jnp.where(mask[:, None] > 0, texts, 0.0)),
            "batch_mask": mask,
        }

    def _batch_size(self, outputs: PyTree) -> int:
        return _embeddings(outputs, needs_bias=False)[0].shape[0]
