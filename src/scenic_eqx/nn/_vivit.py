"""ViViT: a Video Vision Transformer (Arnab et al. 2021, "ViViT: A Video Vision Transformer").

Two of the paper's four models (Section 3.3), the two Scenic's ViViT project trains:

- `attention_type="spacetime"` (Model 1): every tubelet token attends to every other,
  across space and time, in one `Encoder`.
- `attention_type="factorized_encoder"` (Model 2): a spatial `Encoder` runs on the
  tokens of each time index separately (shared weights), each time index is pooled to
  one token, and a temporal `Encoder` of `num_temporal_layers` blocks runs on those.

Module tree: `embedding` (TubeletEmbedding), `cls_token`, `pos_embedding` (over all
tokens, or over the spatial ones), `encoder`, then for Model 2 `temporal_cls_token`,
`temporal_pos_embedding`, `temporal_encoder`; finally `head`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._encoder import Encoder
from ._input_checks import check_image
from ._patch_embedding import _pair
from ._position_embedding import LearnedPositionEmbedding
from ._remat import check_remat_policy
from ._tubelet_embedding import TubeletEmbedding
from ._vit import _WIDTHS

VIVIT_VARIANTS: dict[str, dict] = {
    f"{name}/{patch}x2": dict(
        tubelet_size=(2, patch, patch),
        hidden_size=hidden,
        mlp_dim=mlp,
        num_heads=heads,
        num_layers=layers,
    )
    for name, (hidden, mlp, heads, layers) in _WIDTHS.items()
    for patch in ((14,) if name == "H" else (16,))
}
"""ViViT variants: ViT widths (`_WIDTHS` of `_vit`) and `time x height x width` tubelets
of 2x16x16 (2x14x14 for H), as ViViT-B/16x2, L/16x2 and H/14x2 in Arnab et al. 2021
(Section 4.1); Ti and S are DeiT's widths on the same tubelets."""

_ATTENTION_TYPES = ("spacetime", "factorized_encoder")
_CLASSIFIERS = ("token", "gap")


def _pool(tokens: Float[Array, "tokens dim"], classifier: str) -> Float[Array, " dim"]:
    return tokens[0] if classifier == "token" else jnp.mean(tokens, axis=0)


def _with_cls(
    tokens: Float[Array, "tokens dim"], cls: Float[Array, "1 dim"] | None
) -> Float[Array, "prefixed_tokens dim"]:
    return tokens if cls is None else jnp.concatenate([cls.astype(tokens.dtype), tokens])


class ViViT(eqx.Module):
    """Video Vision Transformer classifier (Arnab et al. 2021), Model 1 or Model 2.

    Arguments:
        num_classes: number of output logits.
        tubelet_size: `(time, height, width)` of a tubelet, or one int for all three.
        hidden_size: size of each token; divisible by `num_heads`.
        num_layers: blocks of the encoder (the spatial one for Model 2).
        num_heads: attention heads per block.
        mlp_dim: hidden size of each block's MLP.
        num_frames: frames of an input clip; divisible by `tubelet_size[0]`.
        image_size: frame side, an int or `(height, width)`; divisible by the tubelet's.
        attention_type: `"spacetime"` (Model 1) or `"factorized_encoder"` (Model 2).
        num_temporal_layers: blocks of the temporal encoder (Model 2 only).
        in_channels: channels of the input frames.
        classifier: `"token"` (class tokens) or `"gap"` (mean of the tokens).
        dropout_rate: dropout after the position embedding and inside the blocks.
        attention_dropout_rate: dropout on the attention weights.
        stochastic_depth: stochastic depth rate of the last block of each encoder.
        gelu_approximate: tanh-approximate GELU in every block (`True` to match a ViT
            loaded from Google's checkpoints; see `vivit_from_vit`).
        layer_norm_eps: epsilon of every layer norm.
        scan_layers: run each encoder's blocks with `lax.scan` over stacked weights.
        remat_policy: `None`, or rematerialise each block of each encoder in the
            backward pass by this `jax.checkpoint` policy (`"nothing_saveable"`,
            `"dots_saveable"`, `"dots_with_no_batch_dims_saveable"`,
            `"everything_saveable"`): less memory for one more forward pass.
        key: PRNG key for initialisation (keyword only).
    """

    embedding: TubeletEmbedding
    cls_token: Float[Array, "1 dim"] | None
    pos_embedding: LearnedPositionEmbedding
    dropout: eqx.nn.Dropout
    encoder: Encoder
    temporal_cls_token: Float[Array, "1 dim"] | None
    temporal_pos_embedding: LearnedPositionEmbedding | None
    temporal_encoder: Encoder | None
    head: eqx.nn.Linear
    attention_type: str = eqx.field(static=True)
    classifier: str = eqx.field(static=True)
    input_size: tuple[int, int, int] = eqx.field(static=True)

    def __init__(
        self,
        num_classes: int,
        tubelet_size: int | tuple[int, int, int],
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        mlp_dim: int,
        num_frames: int = 32,
        image_size: int | tuple[int, int] = 224,
        *,
        attention_type: str = "spacetime",
        num_temporal_layers: int = 4,
        in_channels: int = 3,
        classifier: str = "token",
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        stochastic_depth: float = 0.0,
        gelu_approximate: bool = False,
        layer_norm_eps: float = 1e-6,
        scan_layers: bool = False,
        remat_policy: str | None = None,
        key: PRNGKeyArray,
    ):
        if attention_type not in _ATTENTION_TYPES:
            raise ValueError(
                f"Unknown `attention_type` (={attention_type!r}); choose from {_ATTENTION_TYPES}"
            )
        if classifier not in _CLASSIFIERS:
            raise ValueError(f"Unknown `classifier` (={classifier!r}); choose from {_CLASSIFIERS}")
        if hidden_size % num_heads:
            raise ValueError(
                f"`hidden_size` (={hidden_size}) must be divisible by `num_heads` (={num_heads})"
            )
        check_remat_policy(remat_policy)
        keys = jax.random.split(key, 6)
        self.embedding = TubeletEmbedding(in_channels, hidden_size, tubelet_size, key=keys[0])
        self.input_size = (num_frames, *_pair(image_size, "image_size"))
        nt, nh, nw = self.embedding.grid(*self.input_size)
        factorized = attention_type == "factorized_encoder"
        num_cls = 1 if classifier == "token" else 0
        self.cls_token = jnp.zeros((1, hidden_size)) if num_cls else None
        spatial_tokens = nh * nw if factorized else nt * nh * nw
        self.pos_embedding = LearnedPositionEmbedding(num_cls + spatial_tokens, hidden_size, key=keys[1])
        self.dropout = eqx.nn.Dropout(dropout_rate)
        encoder_kwargs = dict(
            dropout_rate=dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            stochastic_depth=stochastic_depth,
            gelu_approximate=gelu_approximate,
            layer_norm_eps=layer_norm_eps,
            scan_layers=scan_layers,
            remat_policy=remat_policy,
        )
        self.encoder = Encoder(num_layers, hidden_size, num_heads, mlp_dim, **encoder_kwargs, key=keys[2])
        self.temporal_cls_token = jnp.zeros((1, hidden_size)) if factorized and num_cls else None
        self.temporal_pos_embedding = (
            LearnedPositionEmbedding(num_cls + nt, hidden_size, key=keys[3]) if factorized else None
        )
        self.temporal_encoder = (
            Encoder(num_temporal_layers, hidden_size, num_heads, mlp_dim, **encoder_kwargs, key=keys[4])
            if factorized
            else None
        )
        self.head = eqx.nn.Linear(hidden_size, num_classes, key=keys[5])
        self.attention_type, self.classifier = attention_type, classifier

    def features(
        self, x: Float[Array, "time height width channels"], *, key: PRNGKeyArray | None = None
    ) -> dict[str, Array]:
        """Named intermediates of one clip.

        Returns:
            `stem` (tubelet tokens `[nt * nh * nw, hidden]`, time-major), `encoder_out`
            (tokens after the final norm: all of them for Model 1, the temporal ones for
            Model 2), `pre_logits` (the pooled vector) and `logits`.
        """
        check_image(
            x,
            model="ViViT",
            in_channels=self.embedding.weight.shape[1],
            image_size=self.input_size[1:],
            num_frames=self.input_size[0],
        )
        keys = [None] * 4 if key is None else list(jax.random.split(key, 4))
        out = {"stem": self.embedding(x)}
        if self.temporal_encoder is None:
            h = self.pos_embedding(_with_cls(out["stem"], self.cls_token))
            h = out["encoder_out"] = self.encoder(self.dropout(h, key=keys[0]), key=keys[1])
        else:
            nt = self.input_size[0] // self.embedding.tubelet_size[0]
            frames = out["stem"].reshape(nt, -1, out["stem"].shape[-1])
            frame_keys = None if key is None else jax.random.split(keys[1], nt)

            def spatial(tokens, frame_key):
                h = self.pos_embedding(_with_cls(tokens, self.cls_token))
                k_drop, k_encoder = (None, None) if frame_key is None else jax.random.split(frame_key)
                return _pool(self.encoder(self.dropout(h, key=k_drop), key=k_encoder), self.classifier)

            h = jax.vmap(spatial)(frames, frame_keys)
            h = self.temporal_pos_embedding(_with_cls(h, self.temporal_cls_token))
            h = self.temporal_encoder(self.dropout(h, key=keys[2]), key=keys[3])
            out["encoder_out"] = h
        out["pre_logits"] = _pool(h, self.classifier)
        out["logits"] = self.head(out["pre_logits"])
        return out

    def __call__(
        self,
        x: Float[Array, "*views time height width channels"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, " num_classes"]:
        """Logits of one clip, or the mean logits of a video's views `[views, time, ...]`.

        Multi-view evaluation (several clips and crops of one video, as from
        `get_dataset("video_tfrecord", num_test_clips=..., num_test_crops=...)`) averages
        the logits of the views; `key` drives dropout and stochastic depth in training.
        """
        if getattr(x, "ndim", None) == 4:
            return self.features(x, key=key)["logits"]
        if getattr(x, "ndim", None) != 5:
            raise ValueError(
                "`x` (the input of ViViT) must be one clip (time, height, width, channels) or "
                "its views (views, time, height, width, channels). Received: "
                f"{f'shape {tuple(x.shape)}' if hasattr(x, 'shape') else type(x).__name__}."
            )
        keys = None if key is None else jax.random.split(key, x.shape[0])
        logits = jax.vmap(lambda v, k: self.features(v, key=k)["logits"])(x, keys)
        return jnp.mean(logits, axis=0)
