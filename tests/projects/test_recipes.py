"""The full ImageNet and COCO recipes of `projects/baselines/configs/`: their schedules reach
the sources' learning rates at the sources' steps, their optimizers decay what the sources
decay, and DETR freezes what the paper freezes. (Their `:smoke` variants are trained by
`test_every_project.py`.)"""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scenic_eqx import _config, loops, nn, run

CONFIGS = "projects/baselines/configs/"


def _load(name: str, arg: str = ""):
    return _config.load_config(CONFIGS + name + (f":{arg}" if arg else ""))


@pytest.mark.parametrize(
    "name, num_steps, values",
    [
        # 1,281,167 // 4096 = 312 steps an epoch, 90 epochs; 10k warmup to 3e-3, linear to 1e-5.
        ("imagenet_vit_b16.py", 28_080, {0: 0.0, 5_000: 1.5e-3, 10_000: 3e-3, 28_080: 1e-5}),
        ("imagenet_vit_b16_finetune.py", 20_000, {250: 0.015, 500: 0.03, 20_000: 0.0}),
        # 156 steps an epoch at batch 8192: 7 warmup epochs to 0.1 x 8192 / 256.
        ("imagenet_resnet50.py", 14_040, {546: 1.6, 1_092: 3.2, 14_040: 0.0}),
        # 1,251 steps an epoch at batch 1024: 5k warmup steps to 0.1 x 1024 / 256.
        ("imagenet_bit_r50.py", 112_590, {2_500: 0.2, 5_000: 0.4, 112_590: 0.0}),
        ("imagenet_mixer_b16.py", 93_600, {10_000: 1e-3, 93_600: 1e-5}),
        # 1,848 steps an epoch at batch 64: 1e-4, divided by 10 from epoch 200 of 300 on.
        ("coco_detr.py", 554_400, {0: 1e-4, 369_599: 1e-4, 369_600: 1e-5, 554_399: 1e-5}),
    ],
)
def test_schedule_reaches_the_sources_rates(name, num_steps, values):
    config = _load(name)
    assert config.num_train_steps == num_steps
    _, schedule = run.build_optimizer(config)
    got = [float(schedule(step)) for step in values]
    np.testing.assert_allclose(got, list(values.values()), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("name", ["imagenet_resnet50.py", "imagenet_bit_r50.py"])
def test_sgd_recipes_decay_kernels_only(name):
    config = _load(name)
    params = {"conv": jnp.full((2, 3, 1, 1), 2.0), "bias": jnp.full((3,), 2.0)}
    grads = jax.tree.map(jnp.zeros_like, params)
    optimizer, schedule = run.build_optimizer(config)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    # At the first step (rate 0 during warmup) nothing moves; at the peak a zero gradient
    # leaves `-rate * decay * kernel` and no bias change.
    assert float(schedule(0)) == 0.0 and not np.any(updates["conv"])
    state = optimizer.init(params)
    warmup = config.schedule_kwargs.warmup_steps
    state = optax.tree_utils.tree_set(state, count=jnp.asarray(warmup, jnp.int32))
    updates, _ = optimizer.update(grads, state, params)
    decay = config.optimizer_kwargs.get("l2_regularization", config.optimizer_kwargs.get("weight_decay"))
    peak = config.schedule_kwargs.base_learning_rate
    np.testing.assert_allclose(updates["conv"], -peak * decay * 2.0, rtol=1e-5)
    np.testing.assert_array_equal(updates["bias"], 0.0)


def test_finetune_resamples_to_384_pixels():
    config = _load("imagenet_vit_b16_finetune.py")
    assert config.dataset.image_size == config.model.image_size == 384
    model = eqx.filter_eval_shape(
        lambda: nn.create(config.model_name, num_classes=1000, key=jax.random.key(0), **config.model)
    )
    assert model.pos_embedding.weight.shape == (1 + 24 * 24, 768)


def test_detr_freezes_what_the_paper_freezes():
    config = _load("coco_detr.py")
    assert config.model.backbone_frozen_batch_norm and config.dataset.image_size == 1333
    assert config.dataset.shorter_sides == tuple(range(480, 801, 32))
    model = eqx.filter_eval_shape(
        lambda: nn.create(config.model_name, num_classes=80, key=jax.random.key(0), **config.model)
    )
    leaves = jax.tree.leaves(model, is_leaf=lambda x: isinstance(x, nn.BatchNorm))
    norms = [x for x in leaves if isinstance(x, nn.BatchNorm)]
    assert len(norms) == 53 and all(n.frozen for n in norms)  # ResNet-50's BatchNorms
    params, _ = loops.partition_trainable(model)
    paths = [loops.parameter_path(path) for path, _ in jax.tree_util.tree_leaves_with_path(params)]
    frozen = {p for p in paths if any(re.search(pattern, p) for pattern in config.frozen_parameters)}
    backbone = {p for p in paths if p.startswith("backbone.")}
    expected = {
        p for p in backbone
        if p.startswith(("backbone.stem.", "backbone.stages[0].")) or re.search(r"norm\d?\.(weight|bias)$", p)
    }  # fmt: skip
    assert frozen == expected
    assert "backbone.stages[1].blocks[0].conv2.weight" in backbone - frozen  # layer2 trains
    # What trains in the backbone: the convolutions of its stages 2-4 (4, 6 and 3
    # bottlenecks of 3 convolutions, and each stage's projection).
    assert len(backbone - frozen) == (4 * 3 + 1) + (6 * 3 + 1) + (3 * 3 + 1)
