"""DETR's backbone: a headless ResNet, built (and optionally loaded) outside the detector.

`detr_backbone` builds the backbone `DETR` would build for itself, reading a classifier
checkpoint if asked; `check_detr_backbone` verifies that a given one is the ResNet a
detector's arguments describe, so a mismatch fails at construction, not in a shape error.
"""

from jaxtyping import PRNGKeyArray

from ._batch_norm import freeze_batch_norm
from ._resnet import RESNET_VARIANTS, ResNet


def detr_backbone(
    depth: int,
    width: int = 64,
    in_channels: int = 3,
    stem: str = "imagenet",
    *,
    weights: str | None = None,
    frozen_batch_norm: bool = False,
    key: PRNGKeyArray,
) -> ResNet:
    """The headless ResNet for `DETR(..., backbone=...)`, from a classifier checkpoint if given.

    Arguments:
        depth: one of `RESNET_VARIANTS` (50 in the paper).
        width: channels of the stem and first stage (64).
        in_channels: channels of the input image.
        stem: `"imagenet"` (32x downsampling) or `"cifar"` (8x, small images).
        weights: optional path of a ResNet classifier checkpoint (timm or transformers
            `.safetensors`, see `load_weights`); its head is ignored: DETR starts from an
            ImageNet-trained ResNet.
        frozen_batch_norm: freeze every BatchNorm (`freeze_batch_norm`): running
            statistics (the checkpoint's) in training too, never updated, as in DETR.
        key: PRNG key for initialisation (keyword only); loaded weights replace it.

    Returns:
        A `ResNet` without a head (`ResNet(None, ...)`) whose residual branches start
        from their ordinary initialisation rather than as the identity.
    """
    backbone = ResNet(None, depth, width, in_channels, stem, zero_init_residual=False, key=key)
    if weights is not None:
        from ._weights import load_weights

        backbone = load_weights(backbone, weights)
    return freeze_batch_norm(backbone) if frozen_batch_norm else backbone


def describe_resnet(resnet: ResNet) -> dict[str, object]:
    """The depth, width, input channels and stem of a built `ResNet`, and whether it has a head."""
    first_block = resnet.stages[0].blocks[0]
    stage_sizes = tuple(len(stage.blocks) for stage in resnet.stages)
    depths = [
        d
        for d, (block, sizes) in RESNET_VARIANTS.items()
        if (block, sizes) == (type(first_block), stage_sizes)
    ]
    out_channels, in_channels = resnet.stem.conv.weight.shape[:2]
    return {
        "depth": depths[0] if depths else None,
        "width": int(out_channels),
        "in_channels": int(in_channels),
        "stem": "imagenet" if resnet.stem.max_pool else "cifar",
        "head": resnet.head is not None,
    }


def check_detr_backbone(backbone: object, *, depth: int, width: int, in_channels: int, stem: str) -> None:
    """Raises `ValueError` unless `backbone` is a headless `ResNet` of this depth, width,
    input channels and stem (the detector's `backbone_*` and `in_channels` arguments)."""
    if not isinstance(backbone, ResNet):
        raise ValueError(
            "`backbone` must be a headless `ResNet` (e.g. `nn.detr_backbone(depth, weights=..., key=...)`). "
            f"Received: an object of type {type(backbone).__name__}."
        )
    expected = {"depth": depth, "width": width, "in_channels": in_channels, "stem": stem, "head": False}
    received = describe_resnet(backbone)
    if received != expected:
        differences = ", ".join(
            f"{name}={received[name]!r}" for name in expected if received[name] != expected[name]
        )
        raise ValueError(
            "`backbone` must be the headless ResNet that `backbone_depth`, `backbone_width`, `in_channels` "
            f"and `backbone_stem` describe ({_spelled(expected)}). Received: a ResNet with {differences}."
        )


def _spelled(description: dict[str, object]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in description.items())
