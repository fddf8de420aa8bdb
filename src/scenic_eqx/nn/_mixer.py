"""MLP-Mixer (Tolstikhin et al. 2021, "MLP-Mixer: An all-MLP Architecture for Vision").

Module tree (parameter paths; Linear weights are `[out_features, in_features]`):

```
MlpMixer
├── stem: PatchEmbedding          .weight [hidden, in_channels, ph, pw], .bias [hidden]
├── blocks[i]: MixerBlock
│   ├── norm1: LayerNorm          .weight, .bias [hidden]
│   ├── token_mixing: MlpBlock    .dense1 [tokens_mlp_dim, num_tokens], .dense2
│   ├── norm2: LayerNorm
│   └── channel_mixing: MlpBlock  .dense1 [channels_mlp_dim, hidden], .dense2
├── norm: LayerNorm               (Google's `pre_head_layer_norm`)
└── head: Linear                  [num_classes, hidden]
```
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._input_checks import check_image
from ._layer_norm import LayerNorm
from ._mlp_block import MlpBlock
from ._patch_embedding import PatchEmbedding, _pair
from ._remat import check_remat_policy, remat_call
from ._stochastic_depth import StochasticDepth

_WIDTHS = {
    # name: hidden_size, num_layers, tokens_mlp_dim, channels_mlp_dim (Tolstikhin et al.
    # 2021, Table 1).
    "S": (512, 8, 256, 2048),
    "B": (768, 12, 384, 3072),
    "L": (1024, 24, 512, 4096),
    "H": (1280, 32, 640, 5120),
}

MIXER_VARIANTS: dict[str, dict[str, int]] = {
    f"{name}/{patch}": {
        "patch_size": patch,
        "hidden_size": hidden,
        "num_layers": layers,
        "tokens_mlp_dim": tokens_mlp,
        "channels_mlp_dim": channels_mlp,
    }
    for name, patches in (("S", (16, 32)), ("B", (16, 32)), ("L", (16, 32)), ("H", (14,)))
    for hidden, layers, tokens_mlp, channels_mlp in [_WIDTHS[name]]
    for patch in patches
}
"""The paper's variants, e.g. `"B/16"`: width from `_WIDTHS`, patch size after the slash."""


class MixerBlock(eqx.Module):
    """Token mixing across patches, then channel mixing within each patch, pre-LN.

    Arguments:
        num_tokens: number of patches.
        hidden_size: size of each token.
        tokens_mlp_dim: hidden size of the token-mixing MLP.
        channels_mlp_dim: hidden size of the channel-mixing MLP.
        drop_path_rate: stochastic depth rate of both residual branches.
        gelu_approximate: tanh-approximate GELU (`True` for Google's checkpoints).
        key: PRNG key for initialisation (keyword only).
    """

    norm1: LayerNorm
    token_mixing: MlpBlock
    norm2: LayerNorm
    channel_mixing: MlpBlock
    drop_path: StochasticDepth

    def __init__(
        self,
        num_tokens: int,
        hidden_size: int,
        tokens_mlp_dim: int,
        channels_mlp_dim: int,
        *,
        drop_path_rate: float = 0.0,
        gelu_approximate: bool = False,
        key: PRNGKeyArray,
    ):
        k_tokens, k_channels = jax.random.split(key)
        self.norm1 = LayerNorm(hidden_size)
        self.token_mixing = MlpBlock(
            num_tokens, tokens_mlp_dim, gelu_approximate=gelu_approximate, key=k_tokens
        )
        self.norm2 = LayerNorm(hidden_size)
        self.channel_mixing = MlpBlock(
            hidden_size, channels_mlp_dim, gelu_approximate=gelu_approximate, key=k_channels
        )
        self.drop_path = StochasticDepth(drop_path_rate)

    def __call__(
        self, x: Float[Array, "tokens dim"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "tokens dim"]:
        """`x + token_mixing(norm1(x)^T)^T`, then `x + channel_mixing(norm2(x))`."""
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        x = x + self.drop_path(self.token_mixing(self.norm1(x).T).T, key=k1)
        x = x + self.drop_path(self.channel_mixing(self.norm2(x)), key=k2)
        return x


class MlpMixer(eqx.Module):
    """MLP-Mixer classifier (Tolstikhin et al. 2021): patches, mixer blocks, GAP, head.

    Arguments:
        num_classes: number of output logits.
        patch_size: side of a patch, an int or `(height, width)`.
        hidden_size: size of each token.
        num_layers: number of mixer blocks.
        tokens_mlp_dim: hidden size of the token-mixing MLPs.
        channels_mlp_dim: hidden size of the channel-mixing MLPs.
        image_size: input side, an int or `(height, width)`; divisible by `patch_size`.
        in_channels: channels of the input image.
        stochastic_depth: stochastic depth rate of the last block (0 in the first).
        gelu_approximate: tanh-approximate GELU (`True` for Google's checkpoints).
        remat_policy: `None`, or rematerialise each `MixerBlock` in the backward pass by
            this `jax.checkpoint` policy (`"nothing_saveable"`, `"dots_saveable"`,
            `"dots_with_no_batch_dims_saveable"`, `"everything_saveable"`): less memory
            for one more forward pass.
        key: PRNG key for initialisation (keyword only).
    """

    stem: PatchEmbedding
    blocks: tuple[MixerBlock, ...]
    norm: LayerNorm
    head: eqx.nn.Linear
    image_size: tuple[int, int] = eqx.field(static=True)
    remat_policy: str | None = eqx.field(static=True)

    def __init__(
        self,
        num_classes: int,
        patch_size: int | tuple[int, int],
        hidden_size: int,
        num_layers: int,
        tokens_mlp_dim: int,
        channels_mlp_dim: int,
        image_size: int | tuple[int, int] = 224,
        *,
        in_channels: int = 3,
        stochastic_depth: float = 0.0,
        gelu_approximate: bool = False,
        remat_policy: str | None = None,
        key: PRNGKeyArray,
    ):
        patch, image = _pair(patch_size, "patch_size"), _pair(image_size, "image_size")
        if image[0] % patch[0] or image[1] % patch[1]:
            raise ValueError(
                f"`image_size` (={image_size}) must be divisible by `patch_size` (={patch_size})"
            )
        if num_layers < 1:
            raise ValueError(f"`num_layers` (={num_layers}) must be at least 1")
        self.remat_policy = check_remat_policy(remat_policy)
        num_tokens = (image[0] // patch[0]) * (image[1] // patch[1])
        k_stem, k_head, *k_blocks = jax.random.split(key, num_layers + 2)
        self.stem = PatchEmbedding(in_channels, hidden_size, patch, key=k_stem)
        self.blocks = tuple(
            MixerBlock(
                num_tokens,
                hidden_size,
                tokens_mlp_dim,
                channels_mlp_dim,
                drop_path_rate=stochastic_depth * i / max(num_layers - 1, 1),
                gelu_approximate=gelu_approximate,
                key=k,
            )
            for i, k in enumerate(k_blocks)
        )
        self.norm = LayerNorm(hidden_size)
        self.head = eqx.nn.Linear(hidden_size, num_classes, key=k_head)
        self.image_size = image

    def features(
        self, x: Float[Array, "height width channels"], *, key: PRNGKeyArray | None = None
    ) -> dict[str, Array]:
        """Named intermediates: `stem`, `encoder_out`, `pre_logits` and `logits`."""
        check_image(x, model="MlpMixer", in_channels=self.stem.weight.shape[1], image_size=self.image_size)
        keys = [None] * len(self.blocks) if key is None else jax.random.split(key, len(self.blocks))
        out = {"stem": self.stem(x)}
        h = out["stem"]
        for block, block_key in zip(self.blocks, keys):
            h = remat_call(block, h, key=block_key, remat_policy=self.remat_policy)
        out["encoder_out"] = h = self.norm(h)
        out["pre_logits"] = h = jnp.mean(h, axis=0)
        out["logits"] = self.head(h)
        return out

    def __call__(
        self, x: Float[Array, "height width channels"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " num_classes"]:
        """Logits of one image; `key` drives stochastic depth in training."""
        return self.features(x, key=key)["logits"]
