"""Flax linen references for the benchmarks: ViT, ResNet v1.5, U-Net and DETR, written the linen way.

Each mirrors the scenic_eqx model of the same name layer for layer (same widths, depths,
norms, activations and FLOPs), batched the Flax way (a leading batch axis) and with
Flax's mixed precision: `dtype` is the compute dtype and the parameters stay float32
(`param_dtype`). They serve `compile_memory.py`, `convnet_step.py` and `gpu_step.py`;
nothing in the library imports them.

- `ViT`: Dosovitskiy et al. 2021, pre-LN blocks, class token, learned position
  embedding, exact GELU, LayerNorm epsilon 1e-6 (as `nn.ViT`).
- `ResNet`: He et al. 2016, v1.5 (stride in the 3x3 convolution of a bottleneck), BatchNorm
  momentum 0.9 and epsilon 1e-5 (as `nn.ResNet`).
- `UNet`: Ronneberger et al. 2015 as `nn.UNet`: padded 3x3 convolutions, GroupNorm, 2x2
  max pool, 2x2 stride-2 transposed convolutions, a 1x1 head.
- `DETR`: Carion et al. 2020 with pre-LN transformer blocks and a fixed 2-D sine-cosine
  position encoding, as `nn.DETR` (a ResNet-50 backbone, 6 + 6 blocks, 100 queries,
  auxiliary outputs of every decoder block).
"""

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
from architectures import RESNET_STAGES


def fused_dot_product_attention(query, key, value, mask=None):
    """`softmax(q k^T / sqrt(d)) v` through `jax.nn.dot_product_attention` (`[batch, tokens,
    heads, head_dim]`): cuDNN's fused kernel on a GPU in half precision, XLA's otherwise.

    An `attention_fn` for `flax.linen.MultiHeadDotProductAttention`, the counterpart of
    the cuDNN path `nn.MultiHeadDotProductAttention` takes on a GPU.
    """
    cudnn = (
        jax.default_backend() == "gpu"
        and query.dtype in (jnp.bfloat16, jnp.float16)
        and query.shape[-1] % 8 == 0
        and query.shape[-1] <= 128
        and mask is None
    )
    if mask is not None:
        mask = jnp.broadcast_to(mask, (query.shape[0], query.shape[2], query.shape[1], key.shape[1]))
    return jax.nn.dot_product_attention(
        query, key, value, mask=mask, implementation="cudnn" if cudnn else None
    ).astype(query.dtype)


def _attention(num_heads: int, dtype, fused: bool) -> fnn.MultiHeadDotProductAttention:
    extra = {"attention_fn": fused_dot_product_attention} if fused else {}
    return fnn.MultiHeadDotProductAttention(num_heads=num_heads, dtype=dtype, **extra)


class MlpBlock(fnn.Module):
    """Dense, exact GELU, dropout, Dense, dropout (as `nn.MlpBlock`)."""

    mlp_dim: int
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32

    @fnn.compact
    def __call__(self, x, train: bool):
        dim = x.shape[-1]
        y = fnn.gelu(fnn.Dense(self.mlp_dim, dtype=self.dtype)(x), approximate=False)
        y = fnn.Dropout(self.dropout_rate, deterministic=not train)(y)
        y = fnn.Dense(dim, dtype=self.dtype)(y)
        return fnn.Dropout(self.dropout_rate, deterministic=not train)(y)


class EncoderBlock(fnn.Module):
    """Pre-LN block; `pos`, when given, is added to the queries and keys only (DETR)."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32
    fused_attention: bool = False

    @fnn.compact
    def __call__(self, x, pos=None, *, train: bool):
        h = fnn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        q = h if pos is None else h + pos.astype(h.dtype)
        y = _attention(self.num_heads, self.dtype, self.fused_attention)(q, q, h)
        x = x + fnn.Dropout(self.dropout_rate, deterministic=not train)(y)
        h = fnn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        return x + MlpBlock(self.mlp_dim, self.dropout_rate, self.dtype)(h, train)


class ViT(fnn.Module):
    """ViT classifier: patch embedding, class token, learned position embedding, blocks."""

    num_classes: int
    patch_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    dtype: jnp.dtype = jnp.float32
    fused_attention: bool = False

    @fnn.compact
    def __call__(self, images, train: bool = True):
        p = self.patch_size
        x = fnn.Conv(self.hidden_size, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype)(images)
        x = x.reshape(x.shape[0], -1, self.hidden_size)
        cls = self.param("cls", fnn.initializers.zeros, (1, 1, self.hidden_size))
        x = jnp.concatenate([jnp.tile(cls.astype(x.dtype), (x.shape[0], 1, 1)), x], axis=1)
        pos = self.param("pos_embedding", fnn.initializers.normal(0.02), (1, x.shape[1], self.hidden_size))
        x = x + pos.astype(x.dtype)
        for _ in range(self.num_layers):
            x = EncoderBlock(
                self.num_heads, self.mlp_dim, dtype=self.dtype, fused_attention=self.fused_attention
            )(x, train=train)
        x = fnn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        return fnn.Dense(self.num_classes, dtype=self.dtype)(x[:, 0])


def _conv(features: int, kernel: int, stride: int, dtype) -> fnn.Conv:
    pad = kernel // 2  # torch-style symmetric padding, as `nn.ResNet`'s convolutions
    return fnn.Conv(
        features,
        (kernel, kernel),
        (stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        dtype=dtype,
        kernel_init=fnn.initializers.variance_scaling(2.0, "fan_out", "normal"),
    )


class Bottleneck(fnn.Module):
    """1x1, 3x3 (with the stride: v1.5), 1x1 to 4x `width`; BatchNorm after each."""

    width: int
    stride: int
    dtype: jnp.dtype = jnp.float32

    @fnn.compact
    def __call__(self, x, train: bool):
        norm = lambda **kw: fnn.BatchNorm(  # noqa: E731
            use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, **kw
        )
        y = fnn.relu(norm()(_conv(self.width, 1, 1, self.dtype)(x)))
        y = fnn.relu(norm()(_conv(self.width, 3, self.stride, self.dtype)(y)))
        y = norm(scale_init=fnn.initializers.zeros)(_conv(4 * self.width, 1, 1, self.dtype)(y))
        if x.shape[-1] != 4 * self.width or self.stride != 1:
            x = norm()(_conv(4 * self.width, 1, self.stride, self.dtype)(x))
        return fnn.relu(x + y)


class ResNet(fnn.Module):
    """ResNet v1.5 with the ImageNet stem; `num_classes=None` returns the last feature map."""

    num_classes: int | None
    depth: int = 50
    width: int = 64
    dtype: jnp.dtype = jnp.float32

    @fnn.compact
    def __call__(self, images, train: bool = True):
        x = _conv(self.width, 7, 2, self.dtype)(images)
        x = fnn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)(x)
        x = fnn.max_pool(fnn.relu(x), (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for i, num_blocks in enumerate(RESNET_STAGES[self.depth]):
            for j in range(num_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                x = Bottleneck(self.width * 2**i, stride, self.dtype)(x, train)
        if self.num_classes is None:
            return x
        return fnn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, axis=(1, 2)))


class DoubleConv(fnn.Module):
    """`(3x3 conv -> GroupNorm -> ReLU)` twice."""

    features: int
    num_groups: int
    dtype: jnp.dtype = jnp.float32

    @fnn.compact
    def __call__(self, x):
        for _ in range(2):
            x = _conv(self.features, 3, 1, self.dtype)(x)
            x = fnn.relu(fnn.GroupNorm(self.num_groups, epsilon=1e-5, dtype=self.dtype)(x))
        return x


class UNet(fnn.Module):
    """U-Net as `nn.UNet`: `num_levels` resolutions of `base_features * 2**i` channels."""

    num_classes: int
    base_features: int = 32
    num_levels: int = 4
    num_groups: int = 8
    dtype: jnp.dtype = jnp.float32

    @fnn.compact
    def __call__(self, images, train: bool = True):
        del train  # no BatchNorm, no dropout
        features = [self.base_features * 2**i for i in range(self.num_levels)]
        x, skips = images, []
        for level, width in enumerate(features):
            if level:
                x = fnn.max_pool(x, (2, 2), (2, 2))
            x = DoubleConv(width, self.num_groups, self.dtype)(x)
            skips.append(x)
        skips.pop()
        for width in reversed(features[:-1]):
            x = fnn.ConvTranspose(width, (2, 2), (2, 2), dtype=self.dtype)(x)
            x = DoubleConv(width, self.num_groups, self.dtype)(jnp.concatenate([skips.pop(), x], axis=-1))
        return fnn.Conv(self.num_classes, (1, 1), dtype=self.dtype)(x)


def posemb_sincos_2d(height: int, width: int, dim: int) -> np.ndarray:
    """Fixed 2-D sine-cosine embedding `[height * width, dim]` of a row-major grid."""
    y, x = np.mgrid[:height, :width]
    omega = 1.0 / 10_000.0 ** (np.arange(dim // 4) / (dim // 4 - 1))
    y, x = y.reshape(-1, 1) * omega, x.reshape(-1, 1) * omega
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(np.float32)


class DecoderBlock(fnn.Module):
    """Pre-LN: self-attention (query position on q, k), cross-attention, MLP."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float
    dtype: jnp.dtype = jnp.float32

    @fnn.compact
    def __call__(self, x, memory, query_pos, memory_pos, *, train: bool):
        dropout = lambda y: fnn.Dropout(self.dropout_rate, deterministic=not train)(y)  # noqa: E731
        h = fnn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        q = h + query_pos
        x = x + dropout(_attention(self.num_heads, self.dtype, False)(q, q, h))
        h = fnn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        y = _attention(self.num_heads, self.dtype, False)(h + query_pos, memory + memory_pos, memory)
        x = x + dropout(y)
        h = fnn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        return x + MlpBlock(self.mlp_dim, self.dropout_rate, self.dtype)(h, train)


class DETR(fnn.Module):
    """DETR-R50 (pre-LN): backbone, projection, encoder, decoder over learned queries,
    class and box heads on every decoder block's output; the output dict of `nn.DETR`."""

    num_classes: int
    num_queries: int = 100
    dim: int = 256
    num_heads: int = 8
    mlp_dim: int = 2048
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dropout_rate: float = 0.1
    backbone_depth: int = 50
    backbone_width: int = 64
    dtype: jnp.dtype = jnp.float32

    @fnn.compact
    def __call__(self, images, train: bool = True):
        grid = ResNet(None, self.backbone_depth, self.backbone_width, self.dtype)(images, train)
        batch, height, width, channels = grid.shape
        tokens = fnn.Dense(self.dim, dtype=self.dtype)(grid.reshape(batch, height * width, channels))
        pos = jnp.asarray(posemb_sincos_2d(height, width, self.dim), tokens.dtype)[None]
        for _ in range(self.num_encoder_layers):
            tokens = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout_rate, self.dtype)(
                tokens, pos, train=train
            )
        memory = fnn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(tokens)
        queries = self.param("query_embedding", fnn.initializers.normal(1.0), (self.num_queries, self.dim))
        queries = jnp.broadcast_to(queries.astype(memory.dtype), (batch, *queries.shape))
        final_norm = fnn.LayerNorm(epsilon=1e-6, dtype=self.dtype)
        x, hidden = jnp.zeros_like(queries), []
        for _ in range(self.num_decoder_layers):
            x = DecoderBlock(self.num_heads, self.mlp_dim, self.dropout_rate, self.dtype)(
                x, memory, queries, pos, train=train
            )
            hidden.append(final_norm(x))
        hidden = jnp.stack(hidden, axis=1)  # [batch, layers, queries, dim]
        logits = fnn.Dense(self.num_classes + 1, dtype=self.dtype)(hidden)
        box = fnn.relu(fnn.Dense(self.dim, dtype=self.dtype)(hidden))
        box = fnn.relu(fnn.Dense(self.dim, dtype=self.dtype)(box))
        boxes = jax.nn.sigmoid(fnn.Dense(4, dtype=self.dtype)(box).astype(jnp.float32))
        return {
            "pred_logits": logits[:, -1],
            "pred_boxes": boxes[:, -1],
            "aux_pred_logits": logits[:, :-1],
            "aux_pred_boxes": boxes[:, :-1],
        }
