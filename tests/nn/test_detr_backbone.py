"""`DETR(..., backbone=...)`: a backbone built (and loaded) outside the detector, and its checks."""

import equinox as eqx
import jax
import numpy as np
import pytest

from scenic_eqx import nn

# A timm ResNet-18 classifier of width 2 (5 classes).
CHECKPOINT = "tests/nn/fixtures/timm_resnet_basic.safetensors"
TINY = dict(num_queries=5, dim=16, num_heads=2, mlp_dim=32, num_encoder_layers=1, num_decoder_layers=2)
BACKBONE = dict(backbone_depth=18, backbone_width=2, backbone_stem="imagenet")


def _arrays(tree):
    return jax.tree_util.tree_flatten_with_path(eqx.filter(tree, eqx.is_array))[0]


def _assert_same_arrays(a, b):
    leaves_a, leaves_b = _arrays(a), _arrays(b)
    assert [path for path, _ in leaves_a] == [path for path, _ in leaves_b]
    for (path, x), (_, y) in zip(leaves_a, leaves_b):
        assert x.dtype == y.dtype, jax.tree_util.keystr(path)
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


def test_built_backbone_equals_backbone_weights():
    backbone = nn.detr_backbone(18, width=2, weights=CHECKPOINT, key=jax.random.key(5))
    assert isinstance(backbone, nn.ResNet) and backbone.head is None
    given = nn.DETR(3, **TINY, **BACKBONE, backbone=backbone, key=jax.random.key(1))
    loaded = nn.DETR(3, **TINY, **BACKBONE, backbone_weights=CHECKPOINT, key=jax.random.key(1))
    _assert_same_arrays(given, loaded)
    _assert_same_arrays(eqx.nn.State(given), eqx.nn.State(loaded))
    assert given.backbone is backbone
    # The backbone's arrays are the checkpoint's, not the initialisation's.
    fresh = nn.DETR(3, **TINY, **BACKBONE, key=jax.random.key(1))
    assert not np.array_equal(fresh.backbone.stem.conv.weight, given.backbone.stem.conv.weight)
    classifier = nn.create("resnet18", num_classes=5, width=2, weights=CHECKPOINT, key=jax.random.key(0))
    np.testing.assert_array_equal(given.backbone.stem.conv.weight, classifier.stem.conv.weight)


def test_default_backbone_is_detr_backbone():
    key = jax.random.key(2)
    k_backbone = jax.random.split(key, 7)[0]
    model = nn.DETR(3, **TINY, backbone_depth=18, backbone_width=2, backbone_stem="cifar", key=key)
    _assert_same_arrays(model.backbone, nn.detr_backbone(18, 2, stem="cifar", key=k_backbone))


def test_registry_passes_the_backbone():
    backbone = nn.detr_backbone(18, width=2, weights=CHECKPOINT, key=jax.random.key(5))
    model = nn.create("detr_r50", num_classes=3, **TINY, **BACKBONE, backbone=backbone, key=jax.random.key(1))
    assert model.backbone is backbone
    with pytest.raises(
        ValueError, match=r"`backbone` must be the headless ResNet .* Received: a ResNet with depth=18\."
    ):
        nn.create(
            "detr_r50", num_classes=3, **TINY, backbone_width=2, backbone=backbone, key=jax.random.key(1)
        )


@pytest.mark.parametrize(
    ("backbone", "received"),
    [
        (lambda k: nn.detr_backbone(18, width=4, key=k), r"width=4"),
        (lambda k: nn.detr_backbone(34, width=2, key=k), r"depth=34"),
        (lambda k: nn.detr_backbone(18, width=2, stem="cifar", key=k), r"stem='cifar'"),
        (lambda k: nn.detr_backbone(18, width=2, in_channels=1, key=k), r"in_channels=1"),
        (lambda k: nn.ResNet(5, 18, 2, key=k), r"head=True"),
    ],
)
def test_mismatched_backbone(backbone, received):
    with pytest.raises(
        ValueError,
        match=r"`backbone` must be the headless ResNet that `backbone_depth`, `backbone_width`, `in_channels` "
        r"and `backbone_stem` describe \(depth=18, width=2, in_channels=3, stem='imagenet', head=False\)\. "
        rf"Received: a ResNet with {received}\.",
    ):
        nn.DETR(3, **TINY, **BACKBONE, backbone=backbone(jax.random.key(0)), key=jax.random.key(1))


def test_backbone_of_another_type(without_annotation_checks):
    bit = nn.BiTResNet(3, 26, 8, num_groups=2, key=jax.random.key(0))
    with pytest.raises(
        ValueError, match=r"`backbone` must be a headless `ResNet` .* Received: an object of type BiTResNet\."
    ):
        nn.DETR(3, **TINY, **BACKBONE, backbone=bit, key=jax.random.key(1))


def test_backbone_and_backbone_weights_together():
    backbone = nn.detr_backbone(18, width=2, key=jax.random.key(0))
    with pytest.raises(
        ValueError,
        match=r"either `backbone` .* or `backbone_weights`, not both\. Received: backbone_weights='.*'\.",
    ):
        nn.DETR(3, **TINY, **BACKBONE, backbone=backbone, backbone_weights=CHECKPOINT, key=jax.random.key(1))
