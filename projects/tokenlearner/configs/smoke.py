"""A TokenLearner + TokenFuser ViT on the offline digits, in well under two minutes on a CPU.

    scenic-eqx train --config projects/tokenlearner/configs/smoke.py --workdir workdirs/tokenlearner_smoke

4x4 tokens (2x2 patches of the 8x8 digits) of width 32, 2 blocks; the second block
learns 4 tokens from the 16, processes them and fuses them back. 60 steps: 64% test
accuracy on the 360 held-out digits (chance: 10%) in about 1.5 minutes of wall time on a
busy 2-core machine; `configs/digits.py` has the runs to quote.
"""

import os

import ml_collections

from scenic_eqx import run

run.import_file(os.path.join(os.path.dirname(__file__), "..", "model.py"))  # registers its models


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset_name = "digits"
    config.dataset = ml_collections.ConfigDict()
    config.batch_size = 64
    config.eval_batch_size = 120
    config.model_name = "tokenlearner_vit"
    config.model = ml_collections.ConfigDict(
        dict(
            image_size=8,
            patch_size=2,
            in_channels=1,
            hidden_size=32,
            num_layers=2,
            num_heads=2,
            mlp_dim=64,
            num_learned_tokens=4,
            tokenlearner_position=1,
            use_token_fuser=True,
            bottleneck_dim=16,
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
