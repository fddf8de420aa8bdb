"""TokenLearner ViT against a plain ViT of the same size, on the offline digits, pixel tokens.

    scenic-eqx train --config projects/tokenlearner/configs/digits.py --workdir workdirs/tokenlearner_digits
    scenic-eqx train --config projects/tokenlearner/configs/digits.py:vit --workdir workdirs/tokenlearner_digits_vit
    scenic-eqx train --config projects/tokenlearner/configs/digits.py:fuser --workdir workdirs/tokenlearner_digits_fuser

Each 8x8 digit is cut into 1x1 patches: 64 tokens of width 64, 4 blocks of 4 heads. The
default (no argument) learns 8 tokens after 2 blocks, so the last 2 blocks see 8 tokens
instead of 64; `:vit` is the plain ViT (`vit_ti16` at this size, global average pooling),
`:fuser` the TokenLearner + TokenFuser variant (every later block learns 8 tokens and
fuses them back into the 64). All three share the data, optimizer, schedule, batch and
number of steps (1,500 of batch 64). Mean test accuracy over seeds 0-2 on the 360
held-out digits: 94.4% (TokenLearner, 58% of the plain ViT's forward FLOPs), 93.7%
(plain ViT), 93.6% (fuser, 68%); about 2-3 minutes of CPU time each. Per seed, FLOPs and
wall times: projects/tokenlearner/README.md. `:smoke` shrinks the run to a few steps, for
tests.
"""

import os

import ml_collections

from scenic_eqx import run

run.import_file(os.path.join(os.path.dirname(__file__), "..", "model.py"))  # registers its models

_VARIANTS = ("tokenlearner", "vit", "fuser", "smoke")

# Shared by every variant: 64 pixel tokens of width 64, 4 blocks.
_SIZE = dict(
    image_size=8, patch_size=1, in_channels=1, hidden_size=64, num_layers=4, num_heads=4, mlp_dim=128
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = arg or "tokenlearner"
    if variant not in _VARIANTS:
        raise ValueError(f"`arg` must be one of {_VARIANTS} (or omitted). Received: {arg!r}.")
    smoke = variant == "smoke"
    config = ml_collections.ConfigDict()
    config.dataset_name = "digits"
    config.dataset = ml_collections.ConfigDict()
    config.batch_size = 64
    config.eval_batch_size = 120
    if variant == "vit":
        config.model_name = "vit_ti16"
        config.model = ml_collections.ConfigDict(dict(**_SIZE, classifier="gap"))
    else:
        config.model_name = "tokenlearner_vit"
        config.model = ml_collections.ConfigDict(
            dict(
                **_SIZE,
                num_learned_tokens=8,
                tokenlearner_position=2,
                use_token_fuser=variant == "fuser",
                bottleneck_dim=64,
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
