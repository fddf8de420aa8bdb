"""SigLIP's model: `nn.CLIP` with a learned logit bias, registered as `siglip_digits`.

Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023: the sigmoid loss
classifies every image-text pair of a batch on its own, `exp(t') * cos + b`, with a
learned bias `b` besides the learned log-temperature `t'`, started at `b = -10` and
`t' = log 10` so that the many negative pairs start near their target. The bias is a
parameter, so it lives in the model, which returns it as `"logit_bias"` beside CLIP's
outputs; `tasks.ContrastiveTask(loss_type="sigmoid")` reads it there.
"""

import math

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from scenic_eqx import nn


class SigLIP(eqx.Module):
    """A CLIP dual encoder and a learned logit bias; one example in.

    Arguments:
        logit_bias_init: the bias's initial value (the paper's -10).
        logit_scale_init: the initial log-temperature (the paper's log 10).
        key: PRNG key for initialisation (keyword only).
        **clip_arguments: the arguments of `nn.CLIP` (`embed_dim`, `image_size`, ...).
    """

    clip: nn.CLIP
    logit_bias: Float[Array, ""]

    def __init__(
        self,
        *,
        logit_bias_init: float = -10.0,
        logit_scale_init: float = math.log(10.0),
        key: PRNGKeyArray,
        **clip_arguments,
    ):
        self.clip = nn.CLIP(**clip_arguments, logit_scale_init=logit_scale_init, key=key)
        self.logit_bias = jnp.asarray(logit_bias_init, jnp.float32)

    def encode_image(self, image: Float[Array, "height width channels"]) -> Float[Array, " embed_dim"]:
        return self.clip.encode_image(image)

    def encode_text(self, tokens: Int[Array, " context"]) -> Float[Array, " embed_dim"]:
        return self.clip.encode_text(tokens)

    def __call__(self, inputs: dict[str, Array], *, key: PRNGKeyArray | None = None) -> dict[str, Array]:
        """CLIP's `{"image_embedding", "text_embedding", "logit_scale"}` and `"logit_bias"`."""
        return {**self.clip(inputs, key=key), "logit_bias": self.logit_bias}


@nn.register("siglip_digits", overwrite=True)
def siglip_digits(*, num_classes: int | None = None, key: PRNGKeyArray, **arguments) -> SigLIP:
    """`SigLIP(**arguments)` for configs: `nn.create("siglip_digits", num_classes=None, ...)`.

    A dual encoder has no classifier head: `num_classes` must be None.
    """
    if num_classes is not None:
        raise ValueError(
            "`num_classes` of `siglip_digits` must be None: a dual encoder has no classifier head "
            f"(zero-shot classification builds one from class names). Received: {num_classes!r}."
        )
    return SigLIP(**arguments, key=key)
