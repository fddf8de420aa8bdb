"""Simple CNN on the offline digits dataset: the `make demo` job.

    scenic-eqx train --config projects/baselines/configs/digits_cnn.py --workdir workdirs/digits_cnn

Reaches about 98% test accuracy on the 360 held-out digits (see
projects/baselines/README.md for the measured figure and time). `:smoke` shrinks the run
to a few steps, for tests.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.dataset_name = "digits"
    config.dataset = ml_collections.ConfigDict()
    config.batch_size = 64
    config.eval_batch_size = 120
    config.model_name = "simple_cnn"
    config.model = ml_collections.ConfigDict(dict(in_channels=1, num_filters=(32, 64, 128)))
    config.task_name = "classification"
    config.task = ml_collections.ConfigDict(dict(label_smoothing=0.0))
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=1e-4))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(
        dict(base_learning_rate=3e-3, warmup_steps=5 if smoke else 100)
    )
    config.grad_clip_norm = 1.0
    config.num_train_steps = 20 if smoke else 1000
    config.log_every = 5 if smoke else 50
    config.eval_every = 10 if smoke else 250
    config.checkpoint_every = 10 if smoke else 250
    config.seed = 0
    return config
