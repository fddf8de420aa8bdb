"""DETR on the synthetic shapes detection set: the detection baseline.

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 scenic-eqx train --config projects/baselines/configs/synthetic_detection_detr.py --workdir workdirs/synthetic_detection_detr

Discs, squares and triangles of random size, position and colour on noisy 32x32
backgrounds, one to three per image, with their exact boxes (`scenic_eqx.data`
generates them in memory, nothing to download). `:smoke` shrinks the run to a few
steps, for tests.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.dataset_name = "synthetic_detection"
    config.dataset = ml_collections.ConfigDict(
        dict(
            image_size=16 if smoke else 32,
            num_train_examples=16 if smoke else 4096,
            num_test_examples=16 if smoke else 512,
            seed=0,
        )
    )
    config.batch_size = 8 if smoke else 32
    config.eval_batch_size = 8 if smoke else 128
    config.model_name = "detr_r50"
    config.model = ml_collections.ConfigDict(
        dict(
            backbone_depth=18,
            backbone_width=8 if smoke else 16,
            backbone_stem="cifar",
            dim=16 if smoke else 64,
            num_heads=2 if smoke else 4,
            mlp_dim=32 if smoke else 128,
            num_encoder_layers=1 if smoke else 2,
            num_decoder_layers=2 if smoke else 3,
            num_queries=6 if smoke else 10,
            dropout_rate=0.0,
        )
    )
    config.task_name = "detection"
    config.task = ml_collections.ConfigDict(dict(matcher="hungarian_jax", eos_coef=0.1))
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=1e-4))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(
        dict(base_learning_rate=1e-3, warmup_steps=2 if smoke else 100)
    )
    config.grad_clip_norm = 0.1
    config.num_train_steps = 4 if smoke else 2000
    config.log_every = 2 if smoke else 100
    config.eval_every = 4 if smoke else 500
    config.checkpoint_every = 4 if smoke else 1000
    config.seed = 0
    return config
