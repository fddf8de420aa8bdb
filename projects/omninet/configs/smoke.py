"""A tiny OmniNet ViT on the offline digits, in well under two minutes on a CPU.

    scenic-eqx train --config projects/omninet/configs/smoke.py --workdir workdirs/omninet_smoke

4x4 tokens (2x2 patches of the 8x8 digits) of width 32, 3 blocks: 2 ViT blocks, then the
omnidirectional layer, whose Performer attention (32 random features) runs over the 2 x 16
tokens of both. 60 steps: well above chance (10%) on the 360 held-out digits, not a result
to quote (see `configs/digits.py` for those).
"""

import os

import ml_collections

from scenic_eqx import run

run.import_file(os.path.join(os.path.dirname(__file__), "..", "model.py"))  # registers omninet_vit


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset_name = "digits"
    config.dataset = ml_collections.ConfigDict()
    config.batch_size = 64
    config.eval_batch_size = 120
    config.model_name = "omninet_vit"
    config.model = ml_collections.ConfigDict(
        dict(
            image_size=8,
            patch_size=2,
            in_channels=1,
            hidden_size=32,
            num_layers=3,
            num_heads=2,
            mlp_dim=64,
            num_features=32,
        )
    )
    config.task_name = "classification"
    config.task = ml_collections.ConfigDict()
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=1e-4))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(dict(base_learning_rate=3e-3, warmup_steps=10))
    config.grad_clip_norm = 1.0
    config.num_train_steps = 60
    config.log_every = 20
    config.eval_every = 60
    config.checkpoint_every = 60
    config.seed = 0
    return config
