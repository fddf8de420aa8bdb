"""Analytic FLOPs of one example's forward pass, by model family.

XLA's `compiled.cost_analysis()["flops"]` counts the body of a `lax.scan` once, so for
a model whose blocks are scanned (`ViT(..., scan_layers=True)`) it is about
`num_layers` times too small. The rules here count from the model's own fields (sizes,
patch size, number of layers) and give the same number whether or not it is scanned.
"""

import math
import numbers
from collections.abc import Callable, Sequence

import equinox as eqx
import jax

from ._attention import MultiHeadDotProductAttention
from ._bit import BiTResNet, PreActBottleneck
from ._encoder import Encoder, EncoderBlock
from ._fully_connected import FullyConnected
from ._group_norm import GroupNorm
from ._layer_norm import LayerNorm
from ._map_head import MAPHead
from ._mixer import MixerBlock, MlpMixer
from ._mlp_block import MlpBlock
from ._resnet import BasicBlock, Bottleneck, ResNet
from ._simple_cnn import SimpleCNN
from ._vit import ViT
from ._vivit import ViViT
from ._weight_standardized_conv import StdConv2d

# Elementwise FLOPs per element, as XLA's cost analysis counts the ops these layers emit
# (one per add, multiply, divide, compare or select; transcendentals such as exp, erf,
# tanh and rsqrt are reported apart from FLOPs and are not counted).
_GELU = {False: 4, True: 8}  # x * (0.5 + 0.5 * erf(x / sqrt 2)); the tanh form
_SOFTMAX = 4  # max, subtract, sum, divide; one fewer per row (the reductions)
_NORMALIZE = 6  # two means, centre, square, scale by 1/std; +2 per normalised row
_BATCH_NORM_TRAIN = 6  # mean, centre, square, mean, divide by std, +scale and shift
_BATCH_NORM_INFERENCE = 2  # centre, divide by std, +scale and shift


def _linear(layer: eqx.nn.Linear, rows: int) -> int:
    """A dense layer on `rows` vectors (its weight may carry a leading layer axis)."""
    out_features, in_features = layer.weight.shape[-2:]
    return rows * out_features * (2 * in_features + (layer.bias is not None))


def _layer_norm(norm: LayerNorm, rows: int, dim: int) -> int:
    affine = (norm.weight is not None) + (norm.bias is not None)
    return rows * (dim * (_NORMALIZE + affine) + 2)


def _softmax(rows: int, cols: int) -> int:
    return rows * (_SOFTMAX * cols - 1)


def _attention(attention: MultiHeadDotProductAttention, q_len: int, kv_len: int) -> int:
    """Projections, the query scaling, both attention products and the softmax."""
    dim = attention.query.weight.shape[-2]
    projections = sum(_linear(p, q_len) for p in (attention.query, attention.out)) + sum(
        _linear(p, kv_len) for p in (attention.key, attention.value)
    )
    products = 2 * (2 * q_len * kv_len * dim)  # q k^T and softmax(q k^T) v, all heads
    return projections + q_len * dim + products + attention.num_heads * _softmax(q_len, kv_len)


def _mlp_block(mlp: MlpBlock, rows: int) -> int:
    hidden = rows * mlp.dense1.weight.shape[-2]
    return _linear(mlp.dense1, rows) + _GELU[mlp.gelu_approximate] * hidden + _linear(mlp.dense2, rows)


def _encoder_block(block: EncoderBlock, tokens: int) -> int:
    dim = block.attention.query.weight.shape[-1]
    residuals = 2 * tokens * dim
    norms = _layer_norm(block.norm1, tokens, dim) + _layer_norm(block.norm2, tokens, dim)
    return norms + _attention(block.attention, tokens, tokens) + _mlp_block(block.mlp, tokens) + residuals


def _encoder(encoder: Encoder, tokens: int) -> int:
    """Every block (stacked or not: the count is the same), then the final norm."""
    blocks = encoder.blocks
    if encoder.scan_layers:
        blocks = (blocks,) * len(encoder.drop_path_rates)
    dim = blocks[0].attention.query.weight.shape[-1]
    return sum(_encoder_block(b, tokens) for b in blocks) + _layer_norm(encoder.norm, tokens, dim)


def _map_head(head: MAPHead, tokens: int, dim: int) -> int:
    """One probe attending to `tokens`, then a residual MLP on it."""
    return (
        _attention(head.attention, 1, tokens) + _layer_norm(head.norm, 1, dim) + _mlp_block(head.mlp, 1) + dim
    )


def _embedding(weight_shape: tuple[int, ...], num_patches: int) -> int:
    """A patch (or tubelet) embedding: one dense map of each flattened patch, plus bias."""
    dim, *patch = weight_shape
    return num_patches * dim * (2 * math.prod(patch) + 1)


def _pool(classifier: str, tokens: int, dim: int) -> int:
    return tokens * dim if classifier == "gap" else 0  # "token" takes a row: free


def _vit(model: ViT, input_shape: tuple[int, ...]) -> int:
    channels = model.embedding.weight.shape[1]
    _check_shape(input_shape, (*model.image_size, channels), "ViT")
    dim = model.embedding.weight.shape[0]
    (ph, pw), (h, w) = model.embedding.patch_size, model.image_size
    patches = (h // ph) * (w // pw)
    tokens = patches + (model.cls_token is not None)
    flops = _embedding(model.embedding.weight.shape, patches)
    flops += 0 if model.pos_embedding is None else tokens * dim  # + positions
    flops += _encoder(model.encoder, tokens)
    if model.classifier == "map":
        flops += _map_head(model.map_head, tokens, dim)
    else:
        flops += _pool(model.classifier, tokens, dim)
    if model.pre_logits is not None:
        flops += _linear(model.pre_logits, 1)  # tanh is a transcendental
    return flops + _linear(model.head, 1)


def _vivit_clip(model: ViViT, dim: int) -> int:
    nt, nh, nw = (s // t for s, t in zip(model.input_size, model.embedding.tubelet_size))
    num_cls = model.cls_token is not None
    flops = _embedding(model.embedding.weight.shape, nt * nh * nw)
    if model.temporal_encoder is None:
        tokens = num_cls + nt * nh * nw
        flops += tokens * dim + _encoder(model.encoder, tokens)
        return flops + _pool(model.classifier, tokens, dim) + _linear(model.head, 1)
    # Model 2: the spatial encoder runs on each time index, then a temporal one.
    spatial, temporal = num_cls + nh * nw, num_cls + nt
    per_frame = spatial * dim + _encoder(model.encoder, spatial)
    flops += nt * (per_frame + _pool(model.classifier, spatial, dim))
    flops += temporal * dim + _encoder(model.temporal_encoder, temporal)
    return flops + _pool(model.classifier, temporal, dim) + _linear(model.head, 1)


def _vivit(model: ViViT, input_shape: tuple[int, ...]) -> int:
    channels = model.embedding.weight.shape[1]
    clip = (*model.input_size, channels)
    if len(input_shape) not in (4, 5) or input_shape[-4:] != clip:
        raise ValueError(
            f"`input_shape` must be one clip {clip} or its views (views, *{clip}) for "
            f"this ViViT; Received: {input_shape}"
        )
    if len(input_shape) == 4:
        return _vivit_clip(model, model.embedding.weight.shape[0])
    views, num_classes = input_shape[0], model.head.weight.shape[0]
    # Each view's forward pass, then the mean of their logits.
    return views * (_vivit_clip(model, model.embedding.weight.shape[0]) + num_classes)


def _mixer_block(block: MixerBlock, tokens: int, dim: int) -> int:
    norms = _layer_norm(block.norm1, tokens, dim) + _layer_norm(block.norm2, tokens, dim)
    # Token mixing acts on the transposed map: one row per channel.
    mixing = _mlp_block(block.token_mixing, dim) + _mlp_block(block.channel_mixing, tokens)
    return norms + mixing + 2 * tokens * dim


def _mixer(model: MlpMixer, input_shape: tuple[int, ...]) -> int:
    channels = model.stem.weight.shape[1]
    _check_shape(input_shape, (*model.image_size, channels), "MlpMixer")
    dim = model.stem.weight.shape[0]
    (ph, pw), (h, w) = model.stem.patch_size, model.image_size
    tokens = (h // ph) * (w // pw)
    flops = _embedding(model.stem.weight.shape, tokens)
    flops += sum(_mixer_block(b, tokens, dim) for b in model.blocks)
    flops += _layer_norm(model.norm, tokens, dim) + tokens * dim  # norm, mean of tokens
    return flops + _linear(model.head, 1)


def _valid_taps(size: int, kernel: int, stride: int, pad: tuple[int, int], dilation: int) -> tuple[int, int]:
    """Kernel taps that land inside the input, over all outputs, and the number of
    outputs, along one axis."""
    out = (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1
    taps = sum(0 <= o * stride - pad[0] + k * dilation < size for k in range(kernel) for o in range(out))
    return taps, out


def _convolution(
    weight_shape: tuple[int, ...],
    stride: Sequence[int],
    padding: Sequence[tuple[int, int]],
    dilation: Sequence[int],
    groups: int,
    bias: bool,
    shape: tuple[int, int, int],
) -> tuple[int, tuple[int, int, int]]:
    """FLOPs of a 2-D convolution of a `(channels, height, width)` map, and its output shape.

    Taps that fall on the zero padding are not counted, as in XLA's cost analysis.
    """
    out_channels, in_channels, *kernel = weight_shape
    if shape[0] != in_channels * groups:
        raise ValueError(
            f"a convolution expects {in_channels * groups} input channels; Received: "
            f"a map of shape {shape} (channels, height, width)"
        )
    axes = [_valid_taps(*a) for a in zip(shape[1:], kernel, stride, padding, dilation)]
    outputs = math.prod(out for _, out in axes)
    flops = 2 * in_channels * out_channels * math.prod(taps for taps, _ in axes)
    return flops + bias * out_channels * outputs, (out_channels, *(out for _, out in axes))


def _conv2d(conv: eqx.nn.Conv2d, shape: tuple[int, int, int]):
    padding = conv.padding
    if isinstance(padding, str):
        window = [d * (k - 1) + 1 for k, d in zip(conv.kernel_size, conv.dilation)]
        padding = jax.lax.padtype_to_pads(shape[1:], window, conv.stride, padding)
    return _convolution(
        conv.weight.shape,
        conv.stride,
        padding,
        conv.dilation,
        conv.groups,
        conv.use_bias,
        shape,
    )


def _std_conv2d(conv: StdConv2d, shape: tuple[int, int, int]):
    # Standardising the kernel is done once per step, not per example: not counted.
    pad = conv.weight.shape[-1] // 2
    stride = (conv.stride, conv.stride)
    return _convolution(conv.weight.shape, stride, ((pad, pad),) * 2, (1, 1), 1, False, shape)


def _batch_norm(norm: eqx.nn.BatchNorm, shape: tuple[int, ...]) -> int:
    per_element = _BATCH_NORM_INFERENCE if norm.inference else _BATCH_NORM_TRAIN
    return math.prod(shape) * (per_element + 2 * norm.channelwise_affine)


def _group_norm(norm: GroupNorm, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * (_NORMALIZE + 2) + 2 * norm.num_groups


def _max_pool(kernel: int, stride: int, pad: int, shape: tuple[int, int, int]):
    """A `kernel x kernel` max pool: `kernel**2 - 1` comparisons per output."""
    out = [(s + 2 * pad - kernel) // stride + 1 for s in shape[1:]]
    return (kernel * kernel - 1) * shape[0] * math.prod(out), (shape[0], *out)


def _resnet_block(block: BasicBlock | Bottleneck, shape: tuple[int, int, int]):
    flops = 0
    if block.downsample is not None:
        f, short = _conv2d(block.downsample.conv, shape)
        flops += f + _batch_norm(block.downsample.norm, short)
    pairs = [(block.conv1, block.norm1), (block.conv2, block.norm2)]
    if isinstance(block, Bottleneck):
        pairs.append((block.conv3, block.norm3))
    for conv, norm in pairs:
        f, shape = _conv2d(conv, shape)
        flops += f + _batch_norm(norm, shape) + math.prod(shape)  # + ReLU, or the residual
    return flops + math.prod(shape), shape  # the final ReLU


def _resnet(model: ResNet, input_shape: tuple[int, ...]) -> int:
    shape = _channels_first(input_shape, model.stem.conv.weight.shape[1], "ResNet")
    flops, shape = _conv2d(model.stem.conv, shape)
    flops += _batch_norm(model.stem.norm, shape) + math.prod(shape)  # + ReLU
    if model.stem.max_pool:
        f, shape = _max_pool(3, 2, 1, shape)
        flops += f
    for stage in model.stages:
        for block in stage.blocks:
            f, shape = _resnet_block(block, shape)
            flops += f
    flops += math.prod(shape)  # global average pooling
    return flops + (0 if model.head is None else _linear(model.head, 1))


def _bit_block(block: PreActBottleneck, shape: tuple[int, int, int]):
    flops = _group_norm(block.norm1, shape) + math.prod(shape)  # + ReLU
    if block.downsample is not None:
        flops += _std_conv2d(block.downsample, shape)[0]
    f, shape = _std_conv2d(block.conv1, shape)
    flops += f
    for norm, conv in ((block.norm2, block.conv2), (block.norm3, block.conv3)):
        flops += _group_norm(norm, shape) + math.prod(shape)  # + ReLU
        f, shape = _std_conv2d(conv, shape)
        flops += f
    return flops + math.prod(shape), shape  # + residual


def _bit(model: BiTResNet, input_shape: tuple[int, ...]) -> int:
    shape = _channels_first(input_shape, model.stem.conv.weight.shape[1], "BiTResNet")
    flops, shape = _std_conv2d(model.stem.conv, shape)
    f, shape = _max_pool(3, 2, 0, (shape[0], shape[1] + 2, shape[2] + 2))  # zero-padded
    flops += f
    for stage in model.stages:
        for block in stage.blocks:
            f, shape = _bit_block(block, shape)
            flops += f
    flops += _group_norm(model.norm, shape) + 2 * math.prod(shape)  # + ReLU, mean
    return flops + _linear(model.head, 1)


def _simple_cnn(model: SimpleCNN, input_shape: tuple[int, ...]) -> int:
    shape = _channels_first(input_shape, model.convs[0].weight.shape[1], "SimpleCNN")
    flops = 0
    for conv in model.convs:
        f, shape = _conv2d(conv, shape)
        flops += f + math.prod(shape)  # + ReLU
    return flops + math.prod(shape) + _linear(model.head, 1)  # + mean


def _fully_connected(model: FullyConnected, input_shape: tuple[int, ...]) -> int:
    first = model.hidden[0] if model.hidden else model.head
    if math.prod(input_shape) != first.weight.shape[1]:
        raise ValueError(
            f"`input_shape` must have {first.weight.shape[1]} elements for this "
            f"FullyConnected; Received: {input_shape}"
        )
    relus = sum(layer.weight.shape[0] for layer in model.hidden)
    return sum(_linear(layer, 1) for layer in model.hidden) + relus + _linear(model.head, 1)


_RULES: dict[type, Callable[..., int]] = {
    ViT: _vit,
    ViViT: _vivit,
    MlpMixer: _mixer,
    ResNet: _resnet,
    BiTResNet: _bit,
    SimpleCNN: _simple_cnn,
    FullyConnected: _fully_connected,
}


def forward_flops(model: eqx.Module, input_shape: Sequence[int]) -> int:
    """The FLOPs of one example's forward pass through `model`, counted analytically.

    Convention: 2 FLOPs per multiply-add in dense layers, convolutions (patch
    embeddings included) and the two attention products; 1 FLOP per elementwise add,
    multiply, divide or comparison around them (biases, residuals, position embeddings,
    normalisation, softmax, GELU's polynomial, ReLU, pooling), the ops XLA's cost
    analysis counts for the same forward pass. As in that analysis, transcendentals
    (`exp`, `erf`, `tanh`, `rsqrt`) are not FLOPs, and convolution taps that fall on
    zero padding are not counted (a count that includes them, as some profilers do, is
    a few percent higher on a ResNet). Dropout, stochastic depth and the weight
    standardisation of BiT (done once per step, not per example) are not counted.
    BatchNorm costs more in training than in inference mode; the model's own mode
    decides. The count does not depend on `scan_layers` or on the dtype.

    A training step is counted as 3x the forward pass (the forward, and a backward
    with respect to both activations and weights, each twice as costly as the
    forward), as in Kaplan et al. 2020, "Scaling Laws for Neural Language Models",
    and the MFU of Chowdhery et al. 2022, "PaLM", Appendix B:
    `flops_per_step = 3 * batch_size * forward_flops(model, input_shape)`.

    Arguments:
        model: a `ViT`, `ViViT`, `MlpMixer`, `ResNet`, `BiTResNet`, `SimpleCNN` or
            `FullyConnected`.
        input_shape: the shape of one example, without a batch axis:
            `(height, width, channels)`, or `(time, height, width, channels)` (and
            optionally a leading `views` axis) for `ViViT`.

    Returns:
        The FLOPs, an `int`.
    """
    rule = _RULES.get(type(model))
    if rule is None:
        supported = ", ".join(t.__name__ for t in _RULES)
        raise TypeError(
            f"`model` (a {type(model).__name__}) has no FLOP-counting rule; supported: {supported}"
        )
    shape = tuple(input_shape)
    if not shape or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(
            f"`input_shape` must be a non-empty sequence of positive ints; Received: {input_shape!r}"
        )
    return int(rule(model, tuple(int(s) for s in shape)))


def _check_shape(received: tuple[int, ...], expected: tuple[int, ...], name: str) -> None:
    if received != expected:
        raise ValueError(f"`input_shape` must be {expected} for this {name}; Received: {received}")


def _channels_first(input_shape: tuple[int, ...], channels: int, name: str) -> tuple[int, int, int]:
    if len(input_shape) != 3 or input_shape[2] != channels:
        raise ValueError(
            f"`input_shape` must be (height, width, {channels}) for this {name}; Received: {input_shape}"
        )
    height, width, _ = input_shape
    return channels, height, width
