"""ViT-B/16 with a TokenLearner of 8 tokens after 6 of its 12 blocks, trained on ImageNet-1k.

    scenic-eqx train --config projects/tokenlearner/configs/imagenet.py --workdir workdirs/tokenlearner_imagenet \
        --config.dataset.data_dir=TFDS_DATA_DIR

Needs `imagenet2012` prepared by TFDS in `data_dir` (nothing is downloaded; see
`scenic_eqx.data`'s `imagenet2012` for preparing it from the manual download). `:vit`
is the same recipe without the TokenLearner (plain ViT-B/16, global average pooling),
for comparison; `:smoke` a tiny model on 32x32 crops for a few steps, for tests (under
TFDS's mock data).

Model: Ryoo et al., "TokenLearner: Adaptive Space-Time Tokenization for Videos",
NeurIPS 2021 (arXiv:2106.11297): TokenLearner v1.1 (MLP attention with bottleneck 64,
softmax over the 196 patch tokens) learning 8 tokens at 1/2 depth, so that blocks 7-12
see 8 tokens instead of 196: 18.34 GFLOPs per 224x224 image instead of 35.05 for the
plain ViT-B/16, 52% (2 FLOPs per multiply-add; `projects/tokenlearner/flops.py`).

Training: the recipe of the paper's released code (Scenic's
`token_learner/configs/im1k_token_learner_config.py`): 90 epochs at batch 4096 (28,080
steps), Adam (0.9, 0.999) with decoupled weight decay 0.3, gradient clipping at global
norm 1, linear warmup over 10,000 steps to 5e-3 then a linear decay to 1e-5, stochastic
depth 0.1, no dropout, inception crop and flip, global average pooling. One difference:
softmax cross-entropy on the class labels, where Scenic's config trains a sigmoid loss
with a head bias of -10.

Paper figures: the paper's ImageNet results start from JFT-300M pre-training, then
fine-tune on ImageNet: 87.07% top-1 for "16-TokenLearner B/16 (21)" and 88.87% for
"TokenLearner L/8 (24+11)". It reports no figure for this from-scratch recipe, and this
config has not been run to completion here; Scenic's project README states that 8 or 16 learned tokens in the middle of
the network often keep the accuracy while halving the computation.
"""

import os

import ml_collections

from scenic_eqx import run

run.import_file(os.path.join(os.path.dirname(__file__), "..", "model.py"))  # registers its models

_VARIANTS = ("tokenlearner", "vit", "smoke")
_IMAGENET_TRAIN_SIZE = 1_281_167


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = arg or "tokenlearner"
    if variant not in _VARIANTS:
        raise ValueError(f"`arg` must be one of {_VARIANTS} (or omitted). Received: {arg!r}.")
    smoke = variant == "smoke"
    config = ml_collections.ConfigDict()
    config.dataset_name = "imagenet2012"
    config.dataset = ml_collections.ConfigDict(dict(data_dir=None, image_size=32 if smoke else 224))
    config.batch_size = 8 if smoke else 4096
    config.eval_batch_size = 8 if smoke else 4096
    if smoke:
        size = dict(patch_size=8, hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64, image_size=32)
        config.model_name = "tokenlearner_vit"
        config.model = ml_collections.ConfigDict(
            dict(**size, num_learned_tokens=4, tokenlearner_position=1, bottleneck_dim=16)
        )
    else:
        # ViT-B/16 (Dosovitskiy et al. 2021): 768 wide, 12 blocks of 12 heads, MLP 3072.
        size = dict(patch_size=16, hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072, image_size=224)
        if variant == "vit":
            config.model_name = "vit_b16"
            config.model = ml_collections.ConfigDict(dict(**size, classifier="gap", stochastic_depth=0.1))
        else:
            config.model_name = "tokenlearner_vit"
            config.model = ml_collections.ConfigDict(
                dict(
                    **size,
                    num_learned_tokens=8,
                    tokenlearner_position=6,
                    bottleneck_dim=64,
                    stochastic_depth=0.1,
                )
            )
    config.task_name = "classification"
    config.task = ml_collections.ConfigDict()
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(b1=0.9, b2=0.999, weight_decay=0.3))
    steps_per_epoch = _IMAGENET_TRAIN_SIZE // config.batch_size
    config.num_train_steps = 4 if smoke else 90 * steps_per_epoch
    config.schedule = "warmup_linear_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(
        dict(base_learning_rate=5e-3, warmup_steps=2 if smoke else 10_000, end_learning_rate=1e-5)
    )
    config.grad_clip_norm = 1.0
    config.log_every = 2 if smoke else 100
    config.eval_every = 4 if smoke else 1_000
    config.checkpoint_every = 4 if smoke else 5_000
    config.seed = 42
    return config
