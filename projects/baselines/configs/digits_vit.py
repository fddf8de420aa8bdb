"""ViT (Dosovitskiy et al. 2021) on the offline digits dataset: 2x2 patches of 8x8 images.

    scenic-eqx train --config projects/baselines/configs/digits_vit.py --workdir workdirs/digits_vit

Result and time: projects/baselines/README.md. `:smoke` shrinks the run to a few steps.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.dataset_name = "digits"
    config.dataset = ml_collections.ConfigDict()
    config.batch_size = 64
    config.eval_batch_size = 120
    config.model_name = "vit_ti16"
    config.model = ml_collections.ConfigDict(
        dict(
            image_size=8,
            patch_size=2,
            in_channels=1,
            hidden_size=64,
            num_layers=4,
            num_heads=4,
            mlp_dim=128,
            classifier="gap",
        )
    )
    config.task_name = "classification"
    config.task = ml_collections.ConfigDict(dict(label_smoothing=0.1))
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=1e-4))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(
        dict(base_learning_rate=2e-3, warmup_steps=5 if smoke else 100)
    )
    config.grad_clip_norm = 1.0
    config.num_train_steps = 10 if smoke else 1500
    config.log_every = 5 if smoke else 50
    config.eval_every = 10 if smoke else 500
    config.checkpoint_every = 10 if smoke else 500
    config.seed = 0
    return config
