"""BiT-R50x1 (Kolesnikov et al. 2020) trained on ImageNet-1k: Scenic's BiT-ResNet recipe.

    scenic-eqx train --config projects/baselines/configs/imagenet_bit_r50.py --workdir workdirs/imagenet_bit_r50 \\
        --config.dataset.data_dir=/path/to/tensorflow_datasets

Needs `imagenet2012` prepared by TFDS in `data_dir` (or its two tar files in
`data_dir/downloads/manual`); nothing is downloaded.

Expected: **77.0% top-1** on the 50,000 validation images, the figure Scenic's model zoo
reports for its ImageNet BiT-ResNet-50 config
(`scenic/projects/baselines/configs/imagenet/imagenet_bit_resnet_config.py`). The model
is that of Kolesnikov et al., "Big Transfer (BiT): General Visual Representation
Learning", ECCV 2020 (https://arxiv.org/abs/1912.11370): a pre-activation ResNet-50
with GroupNorm and weight-standardised convolutions, trained here on ILSVRC-2012 alone
as their BiT-S models are. The recipe is Scenic's config's: 90 epochs at batch 1024, SGD with
momentum 0.9 at 0.1 x 1024 / 256 = 0.4 after 5,000 warmup steps, then a cosine decay,
decoupled weight decay 1e-3 (times the learning rate) on the kernels, 224x224 inception
crops and flips (centre crop for evaluation). Where it differs: the loss is softmax
cross-entropy (Scenic's is per-class sigmoid with the head bias at -10). Not run here
(no ImageNet, no accelerator): `:smoke` trains a tiny BiT on a few 32x32 images, for
tests.
"""

import ml_collections
import optax

from scenic_eqx import loops

IMAGENET_TRAIN_EXAMPLES = 1_281_167
BATCH_SIZE = 1024
EPOCHS = 90


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    smoke = arg == "smoke"
    steps_per_epoch = IMAGENET_TRAIN_EXAMPLES // BATCH_SIZE
    config = ml_collections.ConfigDict()
    config.dataset_name = "imagenet2012"
    config.dataset = ml_collections.ConfigDict(
        dict(data_dir=None, image_size=32 if smoke else 224, shuffle_buffer_size=4 if smoke else 250_000)
    )
    config.batch_size = 8 if smoke else BATCH_SIZE
    config.eval_batch_size = 8 if smoke else 1024
    config.model_name = "bit_r50x1"
    # The smallest BiT depth, narrow, with 4 GroupNorm groups: the same family, tiny.
    config.model = ml_collections.ConfigDict(dict(depth=26, width=8, num_groups=4) if smoke else {})
    config.task_name = "classification"
    config.task = ml_collections.ConfigDict()
    # Replaced by this file's `get_optimizer` (SGD with momentum, decoupled decay) when loaded.
    config.optimizer = "sgd"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(momentum=0.9, weight_decay=1e-3))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(
        dict(base_learning_rate=0.1 * BATCH_SIZE / 256, warmup_steps=1 if smoke else 5000)
    )
    config.grad_clip_norm = None
    config.num_train_steps = 2 if smoke else EPOCHS * steps_per_epoch
    config.log_every = 1 if smoke else 100
    config.eval_every = 2 if smoke else 5 * steps_per_epoch
    config.checkpoint_every = 2 if smoke else steps_per_epoch
    config.seed = 0
    return config


def get_optimizer(
    config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """SGD with momentum, then the kernels shrunk by `learning_rate * weight_decay` at each
    step, outside the momentum (Scenic's `explicit_weight_decay`)."""
    kwargs = config.optimizer_kwargs
    return optax.chain(
        optax.trace(decay=kwargs.momentum),
        optax.add_decayed_weights(kwargs.weight_decay, mask=loops.weight_decay_mask),
        optax.scale_by_learning_rate(schedule),
    )
