"""The template's model: a small vision transformer assembled from `scenic_eqx.nn` layers.

Replace it with your own. The contract the loops rely on: an `eqx.Module` that takes ONE
example (no batch axis; `loops.fit` batches it with `jax.vmap`) and a keyword-only `key`
for its randomness (`None` at evaluation).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from beartype import beartype
from jaxtyping import Array, Float, PRNGKeyArray, jaxtyped

from scenic_eqx import nn


class PatchClassifier(eqx.Module):
    """Patches -> tokens with learned positions -> transformer encoder -> mean token -> logits.

    The layout of ViT with global average pooling (Dosovitskiy et al., "An Image is Worth
    16x16 Words", ICLR 2021), at a size that trains in seconds on a CPU.

    Arguments:
        num_classes: number of output logits.
        image_size: side of the square input image.
        in_channels: channels of the input image.
        patch_size: side of a square patch; must divide `image_size`.
        hidden_size: size of each token; divisible by `num_heads`.
        num_layers: transformer blocks.
        num_heads: attention heads per block.
        mlp_dim: hidden size of each block's MLP.
        dropout_rate: dropout inside the blocks (active only when a `key` is given).
        key: PRNG key for initialisation (keyword only).
    """

    embedding: nn.PatchEmbedding
    position: nn.LearnedPositionEmbedding
    encoder: nn.Encoder
    head: eqx.nn.Linear

    def __init__(
        self,
        num_classes: int,
        *,
        image_size: int,
        in_channels: int,
        patch_size: int,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        mlp_dim: int,
        dropout_rate: float = 0.0,
        key: PRNGKeyArray,
    ):
        if image_size % patch_size:
            raise ValueError(
                f"`patch_size` (={patch_size}) must divide `image_size` (={image_size}). "
                f"Received: image_size={image_size}, patch_size={patch_size}."
            )
        k_embedding, k_position, k_encoder, k_head = jax.random.split(key, 4)
        num_tokens = (image_size // patch_size) ** 2
        self.embedding = nn.PatchEmbedding(in_channels, hidden_size, patch_size, key=k_embedding)
        self.position = nn.LearnedPositionEmbedding(num_tokens, hidden_size, key=k_position)
        self.encoder = nn.Encoder(
            num_layers, hidden_size, num_heads, mlp_dim, dropout_rate=dropout_rate, key=k_encoder
        )
        self.head = eqx.nn.Linear(hidden_size, num_classes, key=k_head)

    # The annotations are checked on every trace: a wrong input shape fails here, naming
    # the axis, before any layer runs.
    @jaxtyped(typechecker=beartype)
    def __call__(
        self,
        x: Float[Array, "height width channels"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, " num_classes"]:
        """The logits of one image."""
        tokens = self.position(self.embedding(x))
        tokens = self.encoder(tokens, key=key)
        return self.head(jnp.mean(tokens, axis=0))
