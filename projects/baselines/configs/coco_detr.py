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

Expected: Carion et al. 2020 (https://arxiv.org/abs/2005.12872), DETR R50, report
**AP 42.0** (AP50 62.4, AP75 44.2) on val2017 after 500 epochs, and 40.6 AP after the
300 epochs set here (their Table 2), on 16 V100s with batch 64. Their inputs are
multi-scale (shortest side 480-800, at most 1333, random crops); the `coco/2017`
pipeline here gives 512x512 zero-padded squares (the padding masked out of attention,
as theirs) with horizontal flips. The transformer is pre-LN, the backbone's BatchNorm
trains (the paper freezes it) and the learning rate follows a cosine rather than a
step at epoch 200. So expect fewer AP, mostly on small objects; this recipe has not
been run to completion here (no COCO, no accelerator). AP, AP50 and AP75 are COCO's
(pycocotools) on the boxes of the resized images, so they equal the official ones for
the same detections, except that crowd regions are dropped rather than ignored;
AP_small/medium/large use areas in resized pixels.
"""

import ml_collections

EXAMPLES_PER_EPOCH = 118_287
BATCH_SIZE = 64
EPOCHS = 300


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    steps_per_epoch = EXAMPLES_PER_EPOCH // BATCH_SIZE
    config = ml_collections.ConfigDict()
    config.dataset_name = "coco/2017"
    config.dataset = ml_collections.ConfigDict(
        dict(data_dir=None, image_size=512, max_boxes=100, shuffle_buffer_size=10_000)
    )
    config.batch_size = BATCH_SIZE
    config.eval_batch_size = 64
    config.model_name = "detr_r50"
    config.model = ml_collections.ConfigDict(
        # The pipeline pads each image to a square with exact zeros: masked, as the
        # paper's pixel mask does.
        dict(num_queries=100, dropout_rate=0.1, backbone_weights=None, mask_zero_padding=True)
    )
    config.task_name = "detection"
    config.task = ml_collections.ConfigDict(
        dict(eos_coef=0.1, class_loss_coef=1.0, bbox_loss_coef=5.0, giou_loss_coef=2.0,
             matcher="hungarian_jax", aux_loss=True)
    )  # fmt: skip
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=1e-4))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(
        dict(base_learning_rate=1e-4, warmup_steps=steps_per_epoch)
    )
    # The paper's 1e-5 for the backbone and 1e-4 for the transformer.
    config.learning_rate_multipliers = ml_collections.ConfigDict({"backbone": 0.1})
    config.grad_clip_norm = 0.1
    config.num_train_steps = EPOCHS * steps_per_epoch
    config.log_every = 100
    config.eval_every = 10 * steps_per_epoch
    config.checkpoint_every = steps_per_epoch
    config.seed = 0
    return config
