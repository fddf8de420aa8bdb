"""OmniNet-B/16 (ViT-B/16 whose 12th block is the omnidirectional layer) trained on ImageNet-1k.

    scenic-eqx train --config projects/omninet/configs/imagenet.py --workdir workdirs/omninet_imagenet \
        --config.dataset.data_dir=TFDS_DATA_DIR

Needs `imagenet2012` prepared by TFDS in `data_dir` (nothing is downloaded; see
`scenic_eqx.data`'s `imagenet2012` for preparing it from the manual download). `:vit` is
the same recipe with the plain ViT-B/16, which has exactly the same parameters (86.6M);
`:smoke` a tiny model on 32x32 crops for a few steps, for tests (under TFDS's mock data).

Model: Tay et al., "OmniNet: Omnidirectional Representations from Transformers", ICML 2021
(arXiv:2103.01075), as the paper applies it to Vision Transformers: a ViT whose last
block is the omnidirectional layer, a transformer block with Performer attention over
the 11 x 196 tokens output by the 11 blocks before it, max-pooled over the layers and
added to the 11th block's output (`projects/omninet/model.py`, partition size 12, the
depth); 256 random features per head of 64, global average pooling.

Paper figures: the paper's image recognition experiments pre-train ViT and OmniNet on
JFT-300M, then fine-tune them on ImageNet (and CIFAR-10/100, Oxford-IIIT Pets, Oxford
Flowers-102) or evaluate them few-shot, and report OmniNet above the ViT of the same
size in both settings; see its image recognition tables for the accuracies.
JFT-300M is not public, so this config is the ImageNet-only counterpart: the same two
models trained from scratch on ImageNet-1k with the ViT paper's ImageNet setting for
ViT-B/16 (Dosovitskiy et al. 2021, Table 3): 300 epochs at batch 4096, Adam (0.9, 0.999)
with decoupled weight decay 0.3, dropout 0.1, gradients clipped at global norm 1, 10,000
linear warmup steps to 3e-3 then cosine decay; inception crop and flip at 224x224. This
config has not been run here (no ImageNet, no accelerator): no result to quote yet.
"""

import os

import ml_collections

from scenic_eqx import run

run.import_file(os.path.join(os.path.dirname(__file__), "..", "model.py"))  # registers omninet_vit

_VARIANTS = ("omninet", "vit", "smoke")
_IMAGENET_TRAIN_SIZE = 1_281_167


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = arg or "omninet"
    if variant not in _VARIANTS:
        raise ValueError(f"`arg` must be one of {_VARIANTS} (or omitted). Received: {arg!r}.")
    smoke = variant == "smoke"
    config = ml_collections.ConfigDict()
    config.dataset_name = "imagenet2012"
    config.dataset = ml_collections.ConfigDict(dict(data_dir=None, image_size=32 if smoke else 224))
    config.batch_size = 8 if smoke else 4096
    config.eval_batch_size = 8 if smoke else 4096
    if smoke:
        size = dict(patch_size=8, hidden_size=32, num_layers=3, num_heads=2, mlp_dim=64, image_size=32)
        config.model_name = "omninet_vit"
        config.model = ml_collections.ConfigDict(dict(**size, num_features=16))
    else:
        # ViT-B/16 (Dosovitskiy et al. 2021): 768 wide, 12 blocks of 12 heads, MLP 3072.
        size = dict(patch_size=16, hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072, image_size=224)
        if variant == "vit":
            config.model_name = "vit_b16"
            config.model = ml_collections.ConfigDict(dict(**size, classifier="gap", dropout_rate=0.1))
        else:
            config.model_name = "omninet_vit"
            config.model = ml_collections.ConfigDict(
                dict(**size, partition_size=12, num_features=256, dropout_rate=0.1)
            )
    config.task_name = "classification"
    config.task = ml_collections.ConfigDict()
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(b1=0.9, b2=0.999, weight_decay=0.3))
    steps_per_epoch = _IMAGENET_TRAIN_SIZE // config.batch_size
    config.num_train_steps = 4 if smoke else 300 * steps_per_epoch
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(
        dict(base_learning_rate=3e-3, warmup_steps=2 if smoke else 10_000)
    )
    config.grad_clip_norm = 1.0
    config.log_every = 2 if smoke else 100
    config.eval_every = 4 if smoke else 1_000
    config.checkpoint_every = 4 if smoke else 5_000
    config.seed = 0
    return config
