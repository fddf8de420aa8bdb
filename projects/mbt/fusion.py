"""One transformer layer over several modalities: apart, through bottlenecks, or all together.

Nagrani et al., "Attention Bottlenecks for Multimodal Fusion", NeurIPS 2021
(arXiv:2107.00135), section 3.2. Each modality `m` keeps its own parameters `theta_m`
(one `nn.EncoderBlock` per modality per layer); the layers differ only in what a
modality's block attends over:

- `separate_layer` (every layer of late fusion, and the layers before `fusion_layer`):
  `z_m <- Transformer(z_m; theta_m)`, no cross-modal attention.
- `bottleneck_layer` (eqs. 8-9): `[z_m; zhat_fsn,m] <- Transformer([z_m; z_fsn]; theta_m)`
  for every `m`, then `z_fsn <- mean_m zhat_fsn,m`. The B bottleneck tokens are the only
  path between the modalities.
- `full_attention_layer` (cross-modal attention with modality-specific weights, the
  paper's full-attention baseline): `z_m <- Transformer([z_m; z_other]; theta_m)`
  restricted to `m`'s own tokens, so every token attends to every token of every modality.
"""

from collections.abc import Mapping

import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from scenic_eqx import nn

Tokens = Mapping[str, Float[Array, "tokens dim"]]
Keys = Mapping[str, PRNGKeyArray | None]


def separate_layer(blocks: Mapping[str, nn.EncoderBlock], tokens: Tokens, *, keys: Keys) -> dict:
    """Each modality's block on its own tokens."""
    return {m: blocks[m](tokens[m], key=keys[m]) for m in tokens}


def bottleneck_layer(
    blocks: Mapping[str, nn.EncoderBlock],
    tokens: Tokens,
    bottleneck: Float[Array, "bottlenecks dim"],
    *,
    keys: Keys,
) -> tuple[dict, Float[Array, "bottlenecks dim"]]:
    """Each modality's block on `[its tokens; bottleneck]`; the bottleneck's updates averaged.

    Returns:
        `(tokens, bottleneck)`: each modality's tokens (same shapes) and the new
        bottleneck tokens `[bottlenecks, dim]`, the mean of the modalities' updates (eq. 9).
    """
    new_tokens, updates = {}, []
    for m, x in tokens.items():
        y = blocks[m](jnp.concatenate([x, bottleneck.astype(x.dtype)]), key=keys[m])
        new_tokens[m], update = y[: len(x)], y[len(x) :]
        updates.append(update)
    return new_tokens, jnp.mean(jnp.stack(updates), axis=0)


def full_attention_layer(blocks: Mapping[str, nn.EncoderBlock], tokens: Tokens, *, keys: Keys) -> dict:
    """Each modality's block on every modality's tokens, its own kept.

    All modalities read the layer's input: none sees another's update of the same layer.
    """
    new_tokens = {}
    for m, x in tokens.items():
        others = [tokens[o] for o in tokens if o != m]
        new_tokens[m] = blocks[m](jnp.concatenate([x, *others]), key=keys[m])[: len(x)]
    return new_tokens
