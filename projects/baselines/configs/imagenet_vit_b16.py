"""ViT-B/16 trained from scratch on ImageNet-1k: Scenic's ImageNet ViT recipe.

    scenic-eqx train --config projects/baselines/configs/imagenet_vit_b16.py --workdir workdirs/imagenet_vit_b16 \\
        --config.dataset.data_dir=/path/to/tensorflow_datasets

Needs `imagenet2012` prepared by TFDS in `data_dir` (or its two tar files in
`data_dir/downloads/manual`, from which the first run prepares it, offline); nothing is
downloaded. On several hosts, add `--distributed` (or `--coordinator_address HOST:PORT
--num_processes N --process_id I`).

Expected: **73.7% top-1** on the 50,000 validation images after 90 epochs, the figure
Scenic's model zoo reports for its ImageNet ViT-B/16 config
(`scenic/projects/baselines/configs/imagenet/imagenet_vit_config.py`; the ViT of
Dosovitskiy et al. 2021, https://arxiv.org/abs/2010.11929, whose Table 3 trains it on
ImageNet for 300 epochs, and "How to train your ViT?", Steiner et al. 2021,
https://arxiv.org/abs/2106.10270, which reaches 74.1 with 300 epochs and ImageNet
fine-tuning). The recipe is that config's: 224x224 inception crops and flips (centre
crop for evaluation), a class token and a 768-wide tanh pre-logits layer, dropout 0.1,
batch 4096, Adam(W) with beta 0.9/0.999 and weight decay 0.3, gradient clipping at 1,
10,000 warmup steps to 3e-3 then linear decay to 1e-5. Where it differs: the loss is
softmax cross-entropy (Scenic's is per-class sigmoid with the head bias at -10), weight
decay is optax's (multiplied by the learning rate) and skips biases, norms and position
embeddings. Not run here (no ImageNet, no accelerator): `:smoke` trains a tiny ViT on a
few 32x32 images, for tests.
"""

import ml_collections

IMAGENET_TRAIN_EXAMPLES = 1_281_167
BATCH_SIZE = 4096
EPOCHS = 90


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    smoke = arg == "smoke"
    steps_per_epoch = IMAGENET_TRAIN_EXAMPLES // BATCH_SIZE
    config = ml_collections.ConfigDict()
    config.dataset_name = "imagenet2012"
    config.dataset = ml_collections.ConfigDict(
        dict(data_dir=None, image_size=32 if smoke else 224, shuffle_buffer_size=4 if smoke else 250_000)
    )
    config.batch_size = 8 if smoke else BATCH_SIZE
    config.eval_batch_size = 8 if smoke else 1024
    config.model_name = "vit_b16"
    config.model = ml_collections.ConfigDict(
        dict(classifier="token", representation_size=768, dropout_rate=0.1, image_size=224)
    )
    if smoke:  # the same family, tiny
        config.model.update(
            dict(image_size=32, patch_size=8, hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32,
                 representation_size=16)
        )  # fmt: skip
    config.task_name = "classification"
    config.task = ml_collections.ConfigDict()
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(b1=0.9, b2=0.999, weight_decay=0.3))
    config.schedule = "warmup_linear_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(
        dict(base_learning_rate=3e-3, warmup_steps=1 if smoke else 10_000, end_learning_rate=1e-5)
    )
    config.grad_clip_norm = 1.0
    config.num_train_steps = 2 if smoke else EPOCHS * steps_per_epoch
    config.log_every = 1 if smoke else 100
    config.eval_every = 2 if smoke else 5 * steps_per_epoch
    config.checkpoint_every = 2 if smoke else steps_per_epoch
    config.seed = 0
    return config
