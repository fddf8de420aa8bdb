"""BiT: a pre-activation ResNet (v2) with GroupNorm and weight-standardised convolutions.

Kolesnikov et al. 2020, "Big Transfer (BiT): General Visual Representation Learning",
https://arxiv.org/abs/1912.11370; the pre-activation block is from He et al. 2016,
"Identity Mappings in Deep Residual Networks", https://arxiv.org/abs/1603.05027.
Without BatchNorm the model is stateless, and each example is normalised on its own.

Module tree (parameter paths; in brackets timm's `resnetv2_*_bit` name where it differs):

    stem.conv.weight                          (width, in_channels, 7, 7), StdConv2d
    stages[i].blocks[j].norm1.{weight,bias}   GroupNorm (+ReLU) of the block's input
    stages[i].blocks[j].conv1.weight          1x1
    stages[i].blocks[j].norm2.{weight,bias}
    stages[i].blocks[j].conv2.weight          3x3, carries the stride
    stages[i].blocks[j].norm3.{weight,bias}
    stages[i].blocks[j].conv3.weight          1x1, 4x expansion
    stages[i].blocks[0].downsample.weight     1x1 projection [downsample.conv.weight]
    norm.{weight,bias}                        GroupNorm (+ReLU) before pooling
    head.{weight,bias}                        [head.fc, a 1x1 conv]
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._group_norm import GroupNorm
from ._input_checks import check_image
from ._remat import check_remat_policy, remat_call
from ._weight_standardized_conv import StdConv2d


class PreActBottleneck(eqx.Module):
    """`x + conv3(act(conv2(act(conv1(act(x))))))` with `act = relu . GroupNorm`.

    The projection shortcut (first block of a stage) reads the pre-activated input.
    """

    norm1: GroupNorm
    conv1: StdConv2d
    norm2: GroupNorm
    conv2: StdConv2d
    norm3: GroupNorm
    conv3: StdConv2d
    downsample: StdConv2d | None

    def __init__(self, in_channels: int, width: int, stride: int, num_groups: int, *, key: PRNGKeyArray):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        out_channels = 4 * width
        self.norm1 = GroupNorm(num_groups, in_channels)
        self.conv1 = StdConv2d(in_channels, width, 1, key=k1)
        self.norm2 = GroupNorm(num_groups, width)
        self.conv2 = StdConv2d(width, width, 3, stride, key=k2)
        self.norm3 = GroupNorm(num_groups, width)
        self.conv3 = StdConv2d(width, out_channels, 1, key=k3)
        changes_shape = stride != 1 or in_channels != out_channels
        self.downsample = StdConv2d(in_channels, out_channels, 1, stride, key=k4) if changes_shape else None

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, "c2 h2 w2"]:
        x_pre = jax.nn.relu(self.norm1(x))
        shortcut = x if self.downsample is None else self.downsample(x_pre)
        h = self.conv1(x_pre)
        h = self.conv2(jax.nn.relu(self.norm2(h)))
        h = self.conv3(jax.nn.relu(self.norm3(h)))
        return h + shortcut


class BiTStage(eqx.Module):
    """Pre-activation blocks at one resolution; the first one projects the shortcut.

    With `remat_policy` set, each block runs under `jax.checkpoint` (see `BiTResNet`).
    """

    blocks: tuple[PreActBottleneck, ...]
    remat_policy: str | None = eqx.field(static=True, default=None)

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, "c2 h2 w2"]:
        for block in self.blocks:
            x = remat_call(block, x, remat_policy=self.remat_policy)
        return x


class BiTStem(eqx.Module):
    """A 7x7 stride-2 StdConv, then a 3x3 stride-2 max pool over a zero-padded map."""

    conv: StdConv2d

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, "c2 h2 w2"]:
        h = self.conv(x)
        # BiT pads with zeros (TF's "SAME" max pool on a pre-activation map), not -inf.
        h = jnp.pad(h, ((0, 0), (1, 1), (1, 1)))
        return eqx.nn.MaxPool2d(3, 2)(h)


# Blocks per stage of the bottleneck ResNets used by BiT (Kolesnikov et al. 2020, after
# He et al. 2016, Table 1). Depth 26 is not in the paper (big_vision's and timm's smallest
# bottleneck net): quick to compile for tests and smoke runs.
BIT_VARIANTS: dict[int, tuple[int, ...]] = {
    26: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


class BiTResNet(eqx.Module):
    """BiT ResNet-v2 classifier acting on one image (stateless: GroupNorm, no BatchNorm).

    Arguments:
        num_classes: number of output logits.
        depth: one of `BIT_VARIANTS` (26, 50, 101, 152).
        width: channels of the stem and of the first stage's bottleneck: `64 * k` for
            BiT's width factor `k` (R50x3 has `width=192`). Stage `i` uses `width * 2**i`
            inside its blocks and four times that at their output.
        in_channels: channels of the input image.
        num_groups: GroupNorm groups (32 in BiT); must divide `width`.
        remat_policy: `None`, or rematerialise each block in the backward pass by this
            `jax.checkpoint` policy (`"nothing_saveable"`, `"dots_saveable"`,
            `"dots_with_no_batch_dims_saveable"`, `"everything_saveable"`): less memory
            for one more forward pass.
        key: PRNG key for initialisation (keyword only).

    The head starts from Equinox's default init (BiT zero-initialises it when
    fine-tuning; do so with `eqx.tree_at` if wanted).

    Reference: Kolesnikov et al. 2020, https://arxiv.org/abs/1912.11370.
    """

    stem: BiTStem
    stages: tuple[BiTStage, ...]
    norm: GroupNorm
    head: eqx.nn.Linear

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        width: int = 64,
        in_channels: int = 3,
        num_groups: int = 32,
        *,
        remat_policy: str | None = None,
        key: PRNGKeyArray,
    ):
        check_remat_policy(remat_policy)
        if depth not in BIT_VARIANTS:
            valid = ", ".join(map(str, BIT_VARIANTS))
            raise ValueError(f"`depth` (={depth}) must be one of {valid}.")
        if width < 1 or width % num_groups:
            raise ValueError(
                f"`width` (={width}) must be a positive multiple of `num_groups` (={num_groups})."
            )
        stage_sizes = BIT_VARIANTS[depth]
        stem_key, head_key, *block_keys = jax.random.split(key, 2 + sum(stage_sizes))
        self.stem = BiTStem(StdConv2d(in_channels, width, 7, 2, key=stem_key))
        stages, channels, keys = [], width, iter(block_keys)
        for i, num_blocks in enumerate(stage_sizes):
            blocks = []
            for j in range(num_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(PreActBottleneck(channels, width * 2**i, stride, num_groups, key=next(keys)))
                channels = 4 * width * 2**i
            stages.append(BiTStage(tuple(blocks), remat_policy))
        self.stages = tuple(stages)
        self.norm = GroupNorm(num_groups, channels)
        self.head = eqx.nn.Linear(channels, num_classes, key=head_key)

    def features(self, x: Float[Array, "height width channels"]) -> dict[str, Array]:
        """Named intermediates: `stem`, `stage_1`..`stage_4` (channels-last maps; the last
        before the final norm) and the pooled `pre_logits` vector."""
        check_image(x, model="BiTResNet", in_channels=self.stem.conv.weight.shape[1])
        h = self.stem(jnp.moveaxis(x, -1, 0))  # Equinox layers are channels-first.
        out = {"stem": jnp.moveaxis(h, 0, -1)}
        for i, stage in enumerate(self.stages, 1):
            h = stage(h)
            out[f"stage_{i}"] = jnp.moveaxis(h, 0, -1)
        out["pre_logits"] = jnp.mean(jax.nn.relu(self.norm(h)), axis=(1, 2))
        return out

    def __call__(
        self,
        x: Float[Array, "height width channels"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, " num_classes"]:
        """Logits of one example; `key` is unused (the model has no randomness)."""
        del key
        return self.head(self.features(x)["pre_logits"])
