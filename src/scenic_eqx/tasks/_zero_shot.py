"""Zero-shot classification with an image-text model: class-name prompts as the classifier."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._contrastive import l2_normalize


@eqx.filter_jit
def _class_embeddings(model: eqx.Module, class_tokens: Int[Array, "classes templates context"]) -> Array:
    """Each class's text embeddings, normalised, averaged over its prompts, normalised again."""
    num_classes, num_templates, context = class_tokens.shape
    texts = jax.vmap(model.encode_text)(class_tokens.reshape(num_classes * num_templates, context))
    texts = l2_normalize(texts).reshape(num_classes, num_templates, -1)
    return l2_normalize(jnp.mean(texts, axis=1))


class ZeroShotClassifier(eqx.Module):
    """An image-text model turned into a classifier by the names of the classes.

    Each class is described by prompts ("a photo of the digit seven.", ...); their text
    embeddings, L2-normalised and averaged over the prompts (prompt ensembling), then
    normalised again, are the classifier's weights. An image's logits are the cosine
    similarities of its embedding with them, times `scale`. (Radford et al., "Learning
    Transferable Visual Models From Natural Language Supervision", ICML 2021, sections
    3.1.2 and 3.1.4.)

    A one-example model like any other: `loops.evaluate(ZeroShotClassifier(model,
    tokens), tasks.ClassificationTask(), batches)` gives the zero-shot `accuracy` (and
    `top_5_accuracy` from 5 classes on), exact over padded batches, data-parallel on the
    mesh, and its `loss` is the cross-entropy of the logits at `scale`. Wrapped in a
    `loops.PeriodicEvaluation`, `fit` runs it as it trains (see that class).

    The model must offer `encode_image(image) -> [dim]` and `encode_text(tokens) ->
    [dim]` on one example each (as `nn.CLIP` does). The text embeddings are computed
    once, here, in inference mode.

    Arguments:
        model: the image-text model.
        class_tokens: integer token ids `[num_classes, num_templates, context]`: the
            prompts of each class, tokenized (`ZeroShotClassifier.prompt_tokens`).
        scale: the logits' multiplier (CLIP's zero-shot evaluation uses 100).
    """

    model: eqx.Module
    class_embeddings: Float[Array, "num_classes dim"]
    scale: float = eqx.field(static=True)

    def __init__(
        self,
        model: eqx.Module,
        class_tokens: Int[Array | np.ndarray, "num_classes num_templates context"],
        *,
        scale: float | int = 100.0,
    ):
        for method in ("encode_image", "encode_text"):
            if not callable(getattr(model, method, None)):
                raise ValueError(
                    f"`model` must have an `{method}` method (one example in, an embedding "
                    f"out), as `nn.CLIP` has. Received: {type(model).__name__}."
                )
        if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0:
            raise ValueError(f"`scale` must be a positive number. Received: {scale!r}.")
        self.model = model
        self.class_embeddings = _class_embeddings(eqx.nn.inference_mode(model), jnp.asarray(class_tokens))
        self.scale = float(scale)

    def __call__(
        self, image: Float[Array, "height width channels"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " num_classes"]:
        """The logits of one image over the classes: `scale` times the cosine similarities."""
        embedding = l2_normalize(self.model.encode_image(image)[None])[0]
        return self.scale * (self.class_embeddings @ embedding)

    @staticmethod
    def prompt_tokens(
        class_names: Sequence[str],
        templates: Sequence[str],
        tokenize: Callable[[list[str]], np.ndarray],
    ) -> np.ndarray:
        """The token ids of every class's prompts, for the constructor's `class_tokens`.

        Arguments:
            class_names: one name per class, in the order of the labels ("zero", "one", ...).
            templates: prompts with one `{}` where the class name goes
                ("a photo of the digit {}.").
            tokenize: the model's tokenizer: a list of strings to integer ids
                `[len(strings), context]`.

        Returns:
            int32 `[num_classes, num_templates, context]`.
        """
        if (
            isinstance(class_names, str)
            or not class_names
            or not all(isinstance(n, str) for n in class_names)
        ):
            raise ValueError(f"`class_names` must be a non-empty list of strings. Received: {class_names!r}.")
        if (
            isinstance(templates, str)
            or not templates
            or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates)
        ):
            raise ValueError(
                "`templates` must be a non-empty list of strings, each with one `{}` for the "
                f"class name. Received: {templates!r}."
            )
        prompts = [template.format(name) for name in class_names for template in templates]
        tokens = np.asarray(tokenize(prompts))
        if tokens.ndim != 2 or len(tokens) != len(prompts) or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(
                f"`tokenize` must map a list of {len(prompts)} strings to integer ids "
                f"[{len(prompts)}, context]. Received: dtype {tokens.dtype}, shape {tokens.shape}."
            )
        return tokens.astype(np.int32).reshape(len(class_names), len(templates), -1)
