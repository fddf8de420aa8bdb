"""The digits CLIP (`digits.py`), shortened to a run of about a minute on a CPU.

    scenic-eqx train --config projects/clip/configs/smoke.py --workdir workdirs/clip_smoke

The model, task, data and zero-shot evaluation of `digits.py`, for 150 steps of 128
pairs. Reaches 89.4% zero-shot top-1 accuracy on the 360 held-out digits (chance: 10%;
see projects/clip/README.md).
"""

import os

import ml_collections

from scenic_eqx import run

digits = run.import_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.py"))


def get_config() -> ml_collections.ConfigDict:
    config = digits.get_config()
    config.num_train_steps = 150
    config.schedule_kwargs.warmup_steps = 20
    config.log_every = 25
    config.eval_every = 75
    config.checkpoint_every = 75
    return config
