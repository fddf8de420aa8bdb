"""The template's config: a small patch transformer on the offline digits, in seconds on a CPU.

    .venv/bin/python projects/template/main.py --workdir workdirs/template

Reaches about 90% test accuracy on the 360 held-out digits in 200 steps (chance: 10%).
The keys are those of every scenic_eqx config; `main.py` reads them. `trainer` names
`main.py`'s `train`, so `scenic-eqx train --config projects/template/configs/smoke.py
--workdir DIR` runs the same training.
"""

import os

import ml_collections

MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "main.py")


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset_name = "digits"  # 8x8x1 images, 10 classes; ships with scikit-learn
    config.dataset = ml_collections.ConfigDict()  # extra arguments of `data.get_dataset`
    config.batch_size = 64
    config.eval_batch_size = 120
    # Arguments of `model.PatchClassifier` (besides `num_classes`, from the dataset).
    config.model = ml_collections.ConfigDict(
        dict(
            image_size=8,
            in_channels=1,
            patch_size=2,
            hidden_size=32,
            num_layers=2,
            num_heads=2,
            mlp_dim=64,
        )
    )
    # Arguments of `task.ConfidenceClassificationTask`.
    config.task = ml_collections.ConfigDict(dict(label_smoothing=0.0))
    # `main.py`'s `build_optimizer`: `optax.adamw` on `loops.warmup_cosine_decay`.
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=1e-4))
    config.schedule_kwargs = ml_collections.ConfigDict(dict(base_learning_rate=3e-3, warmup_steps=20))
    config.grad_clip_norm = 1.0
    config.num_train_steps = 200
    config.log_every = 20
    config.eval_every = 100
    config.checkpoint_every = 100
    config.seed = 0
    config.trainer = f"{MAIN}:train"  # what `scenic-eqx train` calls, as `train(config, workdir)`
    return config
