"""OmniNet ViT: a Vision Transformer with omnidirectional layers (Tay et al., "OmniNet:
Omnidirectional Representations from Transformers", ICML 2021, arXiv:2103.01075).

The encoder's `num_layers` blocks are cut into partitions of `partition_size` (`P`)
consecutive blocks. In each partition the first `P - 1` are ViT blocks; the last is the
omnidirectional layer (`omnidirectional.py`): it attends, with Performer attention, over
the `(P - 1) x N` tokens that those blocks output, max-pools them over the layers back to
`N` tokens, and the pooled representation is added to the last block's output:

    x <- X_{P-1} + MaxPool1D(Attend(IndexSort(X_1, ..., X_{P-1}))).

With the default `P = num_layers` there is one partition: `num_layers - 1` ViT blocks,
then the omnidirectional layer as the final block, over the tokens of every layer before
it (the paper's Figure 1, "across all layers (1:L-1)"). A smaller `P` is the paper's
partitioned OmniNet: an omnidirectional layer every `P` blocks, each over
its own partition. Blocks left over after the last whole partition are ViT blocks. As in
the paper, the omnidirectional layer takes the place of a ViT block rather than being
added on top: it has a block's parameters (the Performer draws its random features from
a key, not a parameter), so an OmniNet has exactly the parameters of the ViT of the same
depth and width.

Importing this file registers `omninet_vit` in `scenic_eqx.nn` (every size argument given
by the config); a config imports it with `run.import_file`.
"""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
from beartype import beartype
from jaxtyping import Array, Float, PRNGKeyArray, jaxtyped

from scenic_eqx import nn, run

OmnidirectionalLayer = run.import_file(
    os.path.join(os.path.dirname(__file__), "omnidirectional.py")
).OmnidirectionalLayer

_CLASSIFIERS = ("gap", "token")


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"`{name}` must be a positive int or a pair of them. Received: {value!r}.")
    return pair


def _split(key: PRNGKeyArray | None, num: int) -> list[PRNGKeyArray | None]:
    """`num` keys from `key`, or `num` times `None` (no randomness: evaluation)."""
    return [None] * num if key is None else list(jax.random.split(key, num))


def omninet_layout(num_layers: int, partition_size: int) -> tuple[str, ...]:
    """The kind of each of the `num_layers` blocks: `"vit"` or `"omni"`.

    Every whole partition of `partition_size` blocks is `partition_size - 1` ViT blocks and
    then an omnidirectional layer; the blocks after the last whole partition are ViT blocks.
    `omninet_layout(6, 3)` is `("vit", "vit", "omni", "vit", "vit", "omni")`.
    """
    partition = ("vit",) * (partition_size - 1) + ("omni",)
    whole, rest = divmod(num_layers, partition_size)
    return partition * whole + ("vit",) * rest


class OmniNetViT(eqx.Module):
    """ViT classifier whose encoder has omnidirectional layers (OmniNet, Tay et al. 2021).

    Arguments:
        num_classes: number of output logits.
        patch_size: side of a patch, an int or `(height, width)`.
        hidden_size: size of each token; divisible by `num_heads`.
        num_layers: number of blocks, ViT blocks and omnidirectional layers together.
        num_heads: attention heads per block.
        mlp_dim: hidden size of each block's MLP.
        image_size: input side, an int or `(height, width)`; divisible by `patch_size`.
        in_channels: channels of the input image.
        partition_size: `P`, blocks per partition, in `[2, num_layers]`; `None` for
            `num_layers` (one omnidirectional layer, the last block, over every layer).
        omni_attention: attention of the omnidirectional layers, `"performer"` (FAVOR+)
            or `"softmax"` (exact).
        num_features: random features of the Performer attention, per head.
        classifier: `"gap"` (mean of the final tokens) or `"token"` (a class token).
        dropout_rate: dropout after the position embedding and inside the blocks.
        attention_dropout_rate: dropout on the ViT blocks' attention weights.
        stochastic_depth: stochastic depth rate of the last block (0 in the first).
        layer_norm_eps: epsilon of every layer norm.
        key: PRNG key for initialisation (keyword only).
    """

    embedding: nn.PatchEmbedding
    cls_token: Float[Array, "1 dim"] | None
    pos_embedding: nn.LearnedPositionEmbedding
    dropout: eqx.nn.Dropout
    blocks: tuple[nn.EncoderBlock, ...]
    omni_layers: tuple[OmnidirectionalLayer, ...]
    norm: nn.LayerNorm
    head: eqx.nn.Linear
    layout: tuple[str, ...] = eqx.field(static=True)
    image_size: tuple[int, int] = eqx.field(static=True)

    def __init__(
        self,
        num_classes: int,
        patch_size: int | tuple[int, int],
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        mlp_dim: int,
        image_size: int | tuple[int, int] = 224,
        *,
        in_channels: int = 3,
        partition_size: int | None = None,
        omni_attention: str = "performer",
        num_features: int = 256,
        classifier: str = "gap",
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        stochastic_depth: float = 0.0,
        layer_norm_eps: float = 1e-6,
        key: PRNGKeyArray,
    ):
        patch, image = _pair(patch_size, "patch_size"), _pair(image_size, "image_size")
        if image[0] % patch[0] or image[1] % patch[1]:
            raise ValueError(
                f"`image_size` must be divisible by `patch_size`. Received: image_size={image_size!r}, "
                f"patch_size={patch_size!r}."
            )
        if hidden_size % num_heads:
            raise ValueError(
                f"`hidden_size` must be divisible by `num_heads`. Received: hidden_size={hidden_size}, "
                f"num_heads={num_heads}."
            )
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 2:
            raise ValueError(
                "`num_layers` must be an int of at least 2 (a ViT block and an omnidirectional layer). "
                f"Received: {num_layers!r}."
            )
        partition = num_layers if partition_size is None else partition_size
        if isinstance(partition, bool) or not isinstance(partition, int) or not 2 <= partition <= num_layers:
            raise ValueError(
                f"`partition_size` must be None or an int in [2, num_layers={num_layers}]: each partition "
                f"is at least one ViT block and its omnidirectional layer. Received: {partition_size!r}."
            )
        if classifier not in _CLASSIFIERS:
            raise ValueError(f"`classifier` must be one of {_CLASSIFIERS}. Received: {classifier!r}.")
        k_embed, k_pos, k_blocks, k_head = jax.random.split(key, 4)
        num_tokens = (image[0] // patch[0]) * (image[1] // patch[1]) + (classifier == "token")
        self.embedding = nn.PatchEmbedding(in_channels, hidden_size, patch, key=k_embed)
        self.cls_token = jnp.zeros((1, hidden_size)) if classifier == "token" else None
        self.pos_embedding = nn.LearnedPositionEmbedding(num_tokens, hidden_size, key=k_pos)
        self.dropout = eqx.nn.Dropout(dropout_rate)
        self.layout = omninet_layout(num_layers, partition)
        blocks, omni_layers = [], []
        for i, (kind, block_key) in enumerate(zip(self.layout, jax.random.split(k_blocks, num_layers))):
            # Grows linearly from 0 in the first block, as in `nn.Encoder`.
            drop_path_rate = stochastic_depth * i / (num_layers - 1)
            if kind == "vit":
                blocks.append(
                    nn.EncoderBlock(
                        hidden_size,
                        num_heads,
                        mlp_dim,
                        dropout_rate=dropout_rate,
                        attention_dropout_rate=attention_dropout_rate,
                        drop_path_rate=drop_path_rate,
                        layer_norm_eps=layer_norm_eps,
                        key=block_key,
                    )
                )
            else:
                omni_layers.append(
                    OmnidirectionalLayer(
                        hidden_size,
                        num_heads,
                        mlp_dim,
                        attention=omni_attention,
                        num_features=num_features,
                        dropout_rate=dropout_rate,
                        drop_path_rate=drop_path_rate,
                        layer_norm_eps=layer_norm_eps,
                        key=block_key,
                    )
                )
        self.blocks, self.omni_layers = tuple(blocks), tuple(omni_layers)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.head = eqx.nn.Linear(hidden_size, num_classes, key=k_head)
        self.image_size = image

    def features(
        self, x: Float[Array, "height width channels"], *, key: PRNGKeyArray | None = None
    ) -> dict[str, Array]:
        """Named intermediates of one image.

        Returns:
            `stem` (patch tokens `[N, hidden]`), `omni` (the pooled omnidirectional
            representation `O'` of each partition, `[partitions, N, hidden]`, class token
            first if any), `encoder_out` (after the last block and the final norm,
            `[N, hidden]`), `pre_logits` (the pooled vector) and `logits`.
        """
        if x.shape[:2] != self.image_size or x.shape[2] != self.embedding.weight.shape[1]:
            raise ValueError(
                f"`x` must be an image of `image_size` {self.image_size} with "
                f"{self.embedding.weight.shape[1]} channel(s). Received: shape {x.shape}."
            )
        k_dropout, k_blocks = _split(key, 2)
        out = {"stem": self.embedding(x)}
        h = out["stem"]
        if self.cls_token is not None:
            h = jnp.concatenate([self.cls_token.astype(h.dtype), h])
        h = self.dropout(self.pos_embedding(h), key=k_dropout)
        blocks, omni_layers = iter(self.blocks), iter(self.omni_layers)
        partition_outputs, omni = [], []
        for kind, block_key in zip(self.layout, _split(k_blocks, len(self.layout))):
            if kind == "vit":
                h = next(blocks)(h, key=block_key)
                partition_outputs.append(h)
            else:
                omni.append(next(omni_layers)(jnp.stack(partition_outputs), key=block_key))
                h = h + omni[-1]
                partition_outputs = []
        out["omni"] = jnp.stack(omni)
        h = out["encoder_out"] = self.norm(h)
        out["pre_logits"] = h[0] if self.cls_token is not None else jnp.mean(h, axis=0)
        out["logits"] = self.head(out["pre_logits"])
        return out

    @jaxtyped(typechecker=beartype)
    def __call__(
        self, x: Float[Array, "height width channels"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " num_classes"]:
        """Logits of one image; `key` drives dropout and stochastic depth in training."""
        return self.features(x, key=key)["logits"]


nn.register("omninet_vit", OmniNetViT, overwrite=True)
