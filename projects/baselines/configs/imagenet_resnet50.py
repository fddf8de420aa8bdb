"""ResNet-50 (He et al. 2016) trained on ImageNet-1k for 90 epochs: Scenic's ResNet recipe.

    scenic-eqx train --config projects/baselines/configs/imagenet_resnet50.py --workdir workdirs/imagenet_resnet50 \\
        --config.dataset.data_dir=/path/to/tensorflow_datasets

Needs `imagenet2012` prepared by TFDS in `data_dir` (or its two tar files in
`data_dir/downloads/manual`); nothing is downloaded.

Expected: **76.1% top-1** on the 50,000 validation images, the figure Scenic's model zoo
reports for its ImageNet ResNet-50 config
(`scenic/projects/baselines/configs/imagenet/imagenet_resnet_config.py`; the model of He
et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
https://arxiv.org/abs/1512.03385). The recipe is that config's: 90 epochs at batch 8192, SGD with momentum 0.9
at 0.1 x 8192 / 256 = 3.2 after 7 warmup epochs, then a cosine decay (Goyal et al. 2017,
https://arxiv.org/abs/1706.02677, for the linear scaling and the warmup), L2
regularisation 5e-5 on the convolution and dense kernels, 224x224 inception crops and
flips (the `imagenet2012` pipeline's training augmentation; the centre crop of the
256-pixel resize for evaluation). The model is ResNet v1.5 (stride in the 3x3
convolution) with each residual branch's last BatchNorm scale started at zero. Not run
here (no ImageNet, no accelerator): `:smoke` trains a tiny ResNet on a few 32x32
images, for tests.
"""

import ml_collections
import optax

from scenic_eqx import loops

IMAGENET_TRAIN_EXAMPLES = 1_281_167
BATCH_SIZE = 8192
EPOCHS = 90
WARMUP_EPOCHS = 7


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
    config.model_name = "resnet50"
    # The smallest bottleneck ResNet (depth 26), narrow: the same family, tiny.
    config.model = ml_collections.ConfigDict(dict(depth=26, width=8) if smoke else {})
    config.task_name = "classification"
    config.task = ml_collections.ConfigDict()
    # Replaced by this file's `get_optimizer` (SGD with momentum and L2) when loaded.
    config.optimizer = "sgd"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(momentum=0.9, l2_regularization=5e-5))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(
        dict(
            base_learning_rate=0.1 * BATCH_SIZE / 256,
            warmup_steps=1 if smoke else WARMUP_EPOCHS * steps_per_epoch,
        )
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
    """SGD with momentum on the gradient of the loss plus `l2 / 2 * |kernels|^2`, as
    Scenic's `l2_decay_factor` (biases and BatchNorm parameters are not regularised)."""
    kwargs = config.optimizer_kwargs
    return optax.chain(
        optax.add_decayed_weights(kwargs.l2_regularization, mask=loops.weight_decay_mask),
        optax.sgd(schedule, momentum=kwargs.momentum),
    )
