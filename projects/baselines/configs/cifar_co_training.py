"""Co-training (PolyViT, Likhosherstov et al. 2021): one ViT-Ti/4 on CIFAR-10 and CIFAR-100.

    scenic-eqx train --config projects/baselines/configs/cifar_co_training.py --workdir workdirs/cifar_co

Every step takes a batch of each dataset; the model shares every parameter but its
classifier head (one per dataset); the loss is the weighted sum of the two
classification losses, and each dataset's metrics are logged under its name
(`cifar10_accuracy`, `eval_cifar100_loss`, ...). A weight of 0 turns a dataset's training
off while it is still evaluated: `--config.co_training.cifar100.weight=0.0` is the
CIFAR-10 run alone. Needs both datasets prepared for TFDS (`--config.co_training.
cifar10.dataset.data_dir=...` where they are not in TFDS's default directory). See
docs/co_training.md. `:smoke` shrinks the run to a few steps.
"""

import ml_collections


def _cifar(name: str, weight: float) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            dataset_name=name,
            dataset=ml_collections.ConfigDict(dict(data_dir=None)),
            task_name="classification",
            task=ml_collections.ConfigDict(dict(label_smoothing=0.1)),
            weight=weight,
        )
    )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.co_training = ml_collections.ConfigDict(
        dict(cifar10=_cifar("cifar10", 1.0), cifar100=_cifar("cifar100", 1.0))
    )
    config.batch_size = 8 if smoke else 128
    config.eval_batch_size = 8 if smoke else 500
    config.model_name = "vit_ti16"
    config.model = ml_collections.ConfigDict(
        dict(
            image_size=32,
            patch_size=4,
            classifier="gap",
            **(dict(hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64) if smoke else {}),
        )
    )
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=0.05))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(
        dict(base_learning_rate=1e-3, warmup_steps=2 if smoke else 2_000)
    )
    config.grad_clip_norm = 1.0
    config.num_train_steps = 4 if smoke else 40_000
    config.log_every = 2 if smoke else 200
    config.eval_every = 4 if smoke else 4_000
    config.checkpoint_every = 4 if smoke else 4_000
    config.seed = 0
    return config
