"""`benchmarks/convnet_step.py` and `detr_step.py` compare like with like: their Flax
linen and PyTorch networks have the scenic_eqx models' parameters."""

import pathlib
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))

import convnet_step  # noqa: E402

from scenic_eqx import loops, nn  # noqa: E402


def _sizes(tree) -> list[int]:
    return sorted(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _scenic_eqx(model: str):
    classes = convnet_step.MODELS[model][2]
    if model == "resnet50":
        return nn.ResNet(classes, depth=50, key=jax.random.key(0))
    features, levels, groups = convnet_step.UNET_FEATURES, convnet_step.UNET_LEVELS, convnet_step.UNET_GROUPS
    return nn.UNet(classes, 3, features, levels, groups, key=jax.random.key(0))


@pytest.mark.parametrize("model", ["resnet50", "unet"])
def test_flax_linen_network_has_the_scenic_eqx_parameters(model):
    pytest.importorskip("flax")
    import linen_models

    classes = convnet_step.MODELS[model][2]
    net = linen_models.ResNet(classes, 50) if model == "resnet50" else linen_models.UNet(classes)
    variables = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
    params, _ = loops.partition_trainable(_scenic_eqx(model))
    assert _sizes(variables["params"]) == _sizes(params)


@pytest.mark.parametrize("model", ["resnet50", "unet"])
def test_torch_network_has_the_scenic_eqx_parameters(model):
    pytest.importorskip("torch")
    classes = convnet_step.MODELS[model][2]
    make = convnet_step._torch_resnet50 if model == "resnet50" else convnet_step._torch_unet
    torch_sizes = sorted(p.numel() for p in make(classes).parameters())
    params, _ = loops.partition_trainable(_scenic_eqx(model))
    assert torch_sizes == _sizes(params)


def test_torch_detr_has_the_scenic_eqx_parameters():
    pytest.importorskip("torch")
    import detr_step

    torch_count = sum(p.numel() for p in detr_step._torch_detr().parameters())
    model = eqx.filter_eval_shape(
        lambda: nn.DETR(
            detr_step.CLASSES, detr_step.QUERIES, detr_step.DIM, detr_step.HEADS, detr_step.MLP,
            detr_step.LAYERS, detr_step.LAYERS, detr_step.DROPOUT, key=jax.random.key(0),
        )
    )  # fmt: skip
    params, _ = loops.partition_trainable(model)
    # torch packs the attention's query, key and value projections into one tensor: the
    # totals are compared.
    assert torch_count == sum(_sizes(params))
