"""ResNet v1.5 with BatchNorm: He et al. 2016, "Deep Residual Learning for Image Recognition".

v1.5 puts the stride-2 downsampling of a bottleneck block in its 3x3 convolution (as
torchvision and HF `transformers` do), not in the first 1x1 one.

BatchNorm is `nn.BatchNorm(momentum=0.9, eps=1e-5)` (Equinox's `mode="batch"` layer, with
its statistics in float32 under mixed precision): training normalises
with the statistics of the batch (the `"batch"` vmap axis) and updates a running average
`running = 0.9 * running + 0.1 * batch`, which `eqx.nn.inference_mode` then uses. That is
torch's rule with torch `momentum=0.1`. Equinox's other mode, `"ema"`, normalises *training*
batches with a running average too, which is not what torch does. Two differences remain:
Equinox divides the running average by `1 - 0.9**count` at inference (zero-debiasing; it
vanishes after ~100 steps), and it averages the biased batch variance where torch averages
the unbiased one. An importer of torch running statistics should store them with a large
`count` (e.g. 10**6), so that the debiasing factor is exactly 1.

Module tree (parameter paths; stage `i` and block `j` count from 0):

    stem.conv.weight                              (width, in_channels, 7, 7); 3x3 for "cifar"
    stem.norm.{weight,bias}                       BatchNorm; running statistics in the State
    stages[i].blocks[j].conv1.weight              1x1 (bottleneck); basic: 3x3 with the stride
    stages[i].blocks[j].norm1.{weight,bias}
    stages[i].blocks[j].conv2.weight              3x3; bottleneck: with the stride (v1.5)
    stages[i].blocks[j].norm2.{weight,bias}
    stages[i].blocks[j].conv3.weight              bottleneck only, 1x1
    stages[i].blocks[j].norm3.{weight,bias}       bottleneck only
    stages[i].blocks[0].downsample.conv.weight    1x1, when the shape changes
    stages[i].blocks[0].downsample.norm.{weight,bias}
    head.{weight,bias}

torchvision / timm names map as `conv1 -> stem.conv`, `bn1 -> stem.norm`,
`layer{i+1}.{j}.convK / bnK -> stages[i].blocks[j].convK / normK`,
`downsample.0 / downsample.1 -> downsample.conv / downsample.norm`, `fc -> head`.
Convolution weights share torch's `(out, in, kh, kw)` layout.
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._batch_norm import BatchNorm
from ._conv_init import he_conv2d as _conv
from ._input_checks import check_image
from ._remat import check_remat_policy, remat_call

_State = eqx.nn.State


def _batch_norm(channels: int, zero_init: bool = False) -> BatchNorm:
    # Statistics in float32 even on bfloat16 activations (mixed precision).
    norm = BatchNorm(channels, "batch", eps=1e-5, momentum=0.9)
    if zero_init:
        norm = eqx.tree_at(lambda n: n.weight, norm, jnp.zeros(channels))
    return norm


class Downsample(eqx.Module):
    """The projection shortcut: a strided 1x1 conv and BatchNorm."""

    conv: eqx.nn.Conv2d
    norm: BatchNorm

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, key: PRNGKeyArray):
        self.conv = _conv(in_channels, out_channels, 1, stride, key=key)
        self.norm = _batch_norm(out_channels)

    def __call__(self, x: Float[Array, "c h w"], state: _State) -> tuple[Array, _State]:
        return self.norm(self.conv(x), state)


class BasicBlock(eqx.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    expansion: ClassVar[int] = 1
    conv1: eqx.nn.Conv2d
    norm1: BatchNorm
    conv2: eqx.nn.Conv2d
    norm2: BatchNorm
    downsample: Downsample | None

    def __init__(self, in_channels: int, width: int, stride: int, zero_init_residual: bool, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = _conv(in_channels, width, 3, stride, key=k1)
        self.norm1 = _batch_norm(width)
        self.conv2 = _conv(width, width, 3, key=k2)
        self.norm2 = _batch_norm(width, zero_init_residual)
        changes_shape = stride != 1 or in_channels != width
        self.downsample = Downsample(in_channels, width, stride, key=k3) if changes_shape else None

    def __call__(self, x: Float[Array, "c h w"], state: _State) -> tuple[Array, _State]:
        shortcut = x
        if self.downsample is not None:
            shortcut, state = self.downsample(x, state)
        h, state = self.norm1(self.conv1(x), state)
        h, state = self.norm2(self.conv2(jax.nn.relu(h)), state)
        return jax.nn.relu(h + shortcut), state


class Bottleneck(eqx.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection."""

    expansion: ClassVar[int] = 4
    conv1: eqx.nn.Conv2d
    norm1: BatchNorm
    conv2: eqx.nn.Conv2d
    norm2: BatchNorm
    conv3: eqx.nn.Conv2d
    norm3: BatchNorm
    downsample: Downsample | None

    def __init__(self, in_channels: int, width: int, stride: int, zero_init_residual: bool, *, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        out_channels = width * self.expansion
        self.conv1 = _conv(in_channels, width, 1, key=k1)
        self.norm1 = _batch_norm(width)
        self.conv2 = _conv(width, width, 3, stride, key=k2)
        self.norm2 = _batch_norm(width)
        self.conv3 = _conv(width, out_channels, 1, key=k3)
        self.norm3 = _batch_norm(out_channels, zero_init_residual)
        changes_shape = stride != 1 or in_channels != out_channels
        self.downsample = Downsample(in_channels, out_channels, stride, key=k4) if changes_shape else None

    def __call__(self, x: Float[Array, "c h w"], state: _State) -> tuple[Array, _State]:
        shortcut = x
        if self.downsample is not None:
            shortcut, state = self.downsample(x, state)
        h, state = self.norm1(self.conv1(x), state)
        h, state = self.norm2(self.conv2(jax.nn.relu(h)), state)
        h, state = self.norm3(self.conv3(jax.nn.relu(h)), state)
        return jax.nn.relu(h + shortcut), state


class ResNetStage(eqx.Module):
    """Blocks at one resolution; the first one may downsample.

    With `remat_policy` set, each block runs under `jax.checkpoint` (see `ResNet`); the
    BatchNorm state goes into the checkpointed block and comes out updated.
    """

    blocks: tuple[BasicBlock | Bottleneck, ...]
    remat_policy: str | None = eqx.field(static=True, default=None)

    def __call__(self, x: Float[Array, "c h w"], state: _State) -> tuple[Array, _State]:
        for block in self.blocks:
            x, state = remat_call(block, x, state, remat_policy=self.remat_policy)
        return x, state


class ResNetStem(eqx.Module):
    """conv-BatchNorm-ReLU, then (ImageNet stem only) a 3x3 stride-2 max pool."""

    conv: eqx.nn.Conv2d
    norm: BatchNorm
    max_pool: bool = eqx.field(static=True)

    def __call__(self, x: Float[Array, "c h w"], state: _State) -> tuple[Array, _State]:
        h, state = self.norm(self.conv(x), state)
        h = jax.nn.relu(h)
        if self.max_pool:
            h = eqx.nn.MaxPool2d(3, 2, padding=1)(h)
        return h, state


# He et al. 2016, Table 1: block type and number of blocks in each of the four stages.
# Depth 26 is not in the paper: it is the smallest bottleneck net (timm's `resnet26`),
# quick to compile for tests and smoke runs.
RESNET_VARIANTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    26: (Bottleneck, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNet(eqx.Module):
    """ResNet v1.5 classifier with BatchNorm, acting on one image.

    Arguments:
        num_classes: number of output logits; `None` for a backbone without a head,
            whose `__call__` returns the pooled features (`features` gives the maps).
        depth: one of `RESNET_VARIANTS` (18, 26, 34, 50, 101, 152).
        width: channels of the stem and of the first stage's convolutions (64 in the
            paper); stage `i` uses `width * 2**i` (times 4 at a bottleneck's output).
        in_channels: channels of the input image.
        stem: `"imagenet"` (7x7 stride-2 conv, then a stride-2 max pool: 32x total
            downsampling) or `"cifar"` (3x3 stride-1 conv, no pool: 8x, for small images).
        zero_init_residual: start each residual branch's last BatchNorm scale at zero, so
            that every block begins as the identity (Goyal et al. 2017,
            https://arxiv.org/abs/1706.02677). Gradients of the branch weights are then
            zero at the first step; only the scales move.
        remat_policy: `None`, or rematerialise each residual block in the backward pass
            by this `jax.checkpoint` policy (`"nothing_saveable"`, `"dots_saveable"`,
            `"dots_with_no_batch_dims_saveable"`, `"everything_saveable"`): less memory
            for one more forward pass. The running statistics are updated once per step
            either way: the recomputation's state updates are discarded.
        key: PRNG key for initialisation (keyword only).

    Called as `model(x, state, *, key=None) -> (logits, state)` inside
    `jax.vmap(..., axis_name="batch", in_axes=(0, None), out_axes=(0, None))`; build the
    state with `eqx.nn.State(model)`. The module docstring lists the parameter paths.

    Reference: He et al. 2016, https://arxiv.org/abs/1512.03385.
    """

    stem: ResNetStem
    stages: tuple[ResNetStage, ...]
    head: eqx.nn.Linear | None

    def __init__(
        self,
        num_classes: int | None,
        depth: int = 50,
        width: int = 64,
        in_channels: int = 3,
        stem: str = "imagenet",
        zero_init_residual: bool = True,
        *,
        remat_policy: str | None = None,
        key: PRNGKeyArray,
    ):
        check_remat_policy(remat_policy)
        if depth not in RESNET_VARIANTS:
            valid = ", ".join(map(str, RESNET_VARIANTS))
            raise ValueError(f"`depth` (={depth}) must be one of {valid}.")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"`stem` (={stem!r}) must be 'imagenet' or 'cifar'.")
        if width < 1:
            raise ValueError(f"`width` (={width}) must be a positive number of channels.")
        block_type, stage_sizes = RESNET_VARIANTS[depth]
        stem_key, head_key, *block_keys = jax.random.split(key, 2 + sum(stage_sizes))
        kernel, stride = (7, 2) if stem == "imagenet" else (3, 1)
        self.stem = ResNetStem(
            _conv(in_channels, width, kernel, stride, key=stem_key),
            _batch_norm(width),
            max_pool=stem == "imagenet",
        )
        stages, channels, keys = [], width, iter(block_keys)
        for i, num_blocks in enumerate(stage_sizes):
            blocks = []
            for j in range(num_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block_type(channels, width * 2**i, stride, zero_init_residual, key=next(keys)))
                channels = width * 2**i * block_type.expansion
            stages.append(ResNetStage(tuple(blocks), remat_policy))
        self.stages = tuple(stages)
        self.head = None if num_classes is None else eqx.nn.Linear(channels, num_classes, key=head_key)

    def features(
        self, x: Float[Array, "height width channels"], state: _State
    ) -> tuple[dict[str, Array], _State]:
        """Named intermediates (`stem`, `stage_1`..`stage_4` channels-last maps and the
        pooled `pre_logits` vector) and the updated state."""
        check_image(x, model="ResNet", in_channels=self.stem.conv.weight.shape[1])
        h = jnp.moveaxis(x, -1, 0)  # Equinox convolutions are channels-first.
        h, state = self.stem(h, state)
        out = {"stem": jnp.moveaxis(h, 0, -1)}
        for i, stage in enumerate(self.stages, 1):
            h, state = stage(h, state)
            out[f"stage_{i}"] = jnp.moveaxis(h, 0, -1)
        out["pre_logits"] = jnp.mean(h, axis=(1, 2))
        return out, state

    def __call__(
        self,
        x: Float[Array, "height width channels"],
        state: _State,
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, " num_classes"] | Float[Array, " features"], _State]:
        """Logits of one example (the pooled features without a head) and the updated
        state; `key` is unused."""
        del key
        out, state = self.features(x, state)
        if self.head is None:
            return out["pre_logits"], state
        return self.head(out["pre_logits"]), state
