"""DETR-R50 on COCO 2017: the paper's recipe, for machines with the data and accelerators.

    scenic-eqx train --config projects/baselines/configs/coco_detr.py --workdir workdirs/coco_detr \\
        --config.dataset.data_dir=/path/to/tensorflow_datasets \\
        --config.model.backbone_weights=/path/to/resnet50.safetensors

Needs `coco/2017` prepared by TFDS in `data_dir` (nothing is downloaded) and an
ImageNet-trained ResNet-50 classifier as `.safetensors` (timm's `resnet50` or
torchvision's weights saved with safetensors, or transformers' `microsoft/resnet-50`);
its head is dropped. On several hosts, run the same command on each with
`--distributed` (Cloud TPU, SLURM, Open MPI) or `--coordinator_address HOST:PORT
--num_processes N --process_id I`.

Expected: Carion et al. 2020, "End-to-End Object Detection with Transformers"
(https://arxiv.org/abs/2005.12872), report **40.6 AP** on val2017 for DETR-R50 after
the 300 epochs set here (their Table 2; 42.0 after 500 epochs), on 16 V100s with batch
64. The recipe is theirs: DETR's scale augmentation (flips; the shorter side drawn from
480, 512, ..., 800 and the longer one at most 1333; half the time a random crop of 384
to 600 pixels a side first), the backbone's BatchNorm frozen (ImageNet statistics, and
its scale and shift, with the stem and first stage, in `frozen_parameters`, as their
code does), AdamW 1e-4 with the backbone at 1e-5, weight decay 1e-4, gradient clipping
at 0.1, the learning rate divided by 10 at epoch 200, 100 queries, 6+6 transformer
blocks of width 256, dropout 0.1, auxiliary decoding losses. Where it differs: each
image is zero-padded to a fixed 1333x1333 square (the padding masked out of attention,
as their pixel mask does; they pad to the largest image of each batch), the transformer
is pre-LN, the position encoding is over token indices, and weight decay skips biases,
norms and the queries; so expect a little less, mostly on small objects. AP, AP50 and
AP75 are COCO's (pycocotools) on the boxes of the resized images, so they equal the
official ones for the same detections, except that crowd regions are dropped rather
than ignored; AP_small/medium/large use areas in resized pixels. Not run here (no COCO,
no accelerator): `:smoke` trains a tiny DETR of the same recipe on a few 64x64 images,
for tests.
"""

import ml_collections

EXAMPLES_PER_EPOCH = 118_287
BATCH_SIZE = 64
EPOCHS = 300
LEARNING_RATE_DROP_EPOCH = 200

# What DETR's code trains of its backbone: not the stem and first stage (`conv1`,
# `layer1`), nor any BatchNorm scale or shift (its `FrozenBatchNorm2d` holds buffers).
FROZEN_BACKBONE = (r"^backbone\.stem\.", r"^backbone\.stages\[0\]\.", r"^backbone\..*norm\d?\.(weight|bias)$")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    smoke = arg == "smoke"
    steps_per_epoch = EXAMPLES_PER_EPOCH // BATCH_SIZE
    config = ml_collections.ConfigDict()
    config.dataset_name = "coco/2017"
    config.dataset = ml_collections.ConfigDict(
        dict(
            data_dir=None,
            image_size=1333,  # the longer side's cap, and the padded square
            max_boxes=100,
            shorter_sides=tuple(range(480, 801, 32)),
            crop_size_range=(384, 600),
            crop_shorter_sides=(400, 500, 600),
            shuffle_buffer_size=10_000,
        )
    )
    if smoke:  # the same augmentation at a twentieth of the size
        config.dataset.update(
            dict(image_size=64, max_boxes=8, shorter_sides=(32, 48, 64), crop_size_range=(20, 30),
                 crop_shorter_sides=(24, 32), shuffle_buffer_size=4)
        )  # fmt: skip
    config.batch_size = 8 if smoke else BATCH_SIZE
    config.eval_batch_size = 8 if smoke else 64
    config.model_name = "detr_r50"
    config.model = ml_collections.ConfigDict(
        # The pipeline pads each image with exact zeros: masked, as the paper's pixel mask.
        dict(num_queries=100, dropout_rate=0.1, backbone_weights=None, mask_zero_padding=True,
             backbone_frozen_batch_norm=True)
    )  # fmt: skip
    if smoke:  # the same family, tiny
        config.model.update(
            dict(num_queries=6, dim=16, num_heads=2, mlp_dim=32, num_encoder_layers=1, num_decoder_layers=2,
                 backbone_depth=18, backbone_width=8)
        )  # fmt: skip
    config.task_name = "detection"
    config.task = ml_collections.ConfigDict(
        dict(eos_coef=0.1, class_loss_coef=1.0, bbox_loss_coef=5.0, giou_loss_coef=2.0,
             matcher="hungarian_jax", aux_loss=True)
    )  # fmt: skip
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=1e-4))
    config.schedule = "warmup_step_decay"
    drop_step = 1 if smoke else LEARNING_RATE_DROP_EPOCH * steps_per_epoch
    config.schedule_kwargs = ml_collections.ConfigDict(
        dict(base_learning_rate=1e-4, boundaries=(drop_step,), decay_factor=0.1, warmup_steps=0)
    )
    # The paper's 1e-5 for the backbone and 1e-4 for the transformer.
    config.learning_rate_multipliers = ml_collections.ConfigDict({"backbone": 0.1})
    config.frozen_parameters = FROZEN_BACKBONE
    config.grad_clip_norm = 0.1
    config.num_train_steps = 2 if smoke else EPOCHS * steps_per_epoch
    config.log_every = 1 if smoke else 100
    config.eval_every = 2 if smoke else 10 * steps_per_epoch
    config.checkpoint_every = 2 if smoke else steps_per_epoch
    config.seed = 0
    return config
