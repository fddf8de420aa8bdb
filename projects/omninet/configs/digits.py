"""OmniNet ViT against a plain ViT of the same depth and width, on the offline digits.

    scenic-eqx train --config projects/omninet/configs/digits.py --workdir workdirs/omninet_digits
    scenic-eqx train --config projects/omninet/configs/digits.py:vit --workdir workdirs/omninet_digits_vit
    scenic-eqx train --config projects/omninet/configs/digits.py:partitioned --workdir workdirs/omninet_digits_p2
    scenic-eqx train --config projects/omninet/configs/digits.py:softmax --workdir workdirs/omninet_digits_softmax

Each 8x8 digit is cut into 2x2 patches: 16 tokens of width 64, 4 blocks of 4 heads, global
average pooling. The default (no argument) is OmniNet with one partition: 3 ViT blocks,
then the omnidirectional layer over their 3 x 16 tokens with Performer attention (64
random features per head of 16); `:vit` is the plain ViT of 4 blocks (`vit_ti16` at this
size), which has exactly the same parameters; `:partitioned` is the partitioned OmniNet
with `partition_size=2` (ViT block, omnidirectional layer, twice); `:softmax` the default
OmniNet with exact softmax attention in its omnidirectional layer. All share the data,
optimizer, schedule, batch and number of steps. Test accuracies (3 seeds each, with
`--config.seed`) and wall times: projects/omninet/README.md. `:smoke` shrinks the run to
a few steps, for tests.
"""

import os

import ml_collections

from scenic_eqx import run

run.import_file(os.path.join(os.path.dirname(__file__), "..", "model.py"))  # registers omninet_vit

_VARIANTS = ("omninet", "vit", "partitioned", "softmax", "smoke")

# Shared by every variant: 16 tokens of width 64, 4 blocks, mean of the final tokens.
_SIZE = dict(
    image_size=8, patch_size=2, in_channels=1, hidden_size=64, num_layers=4, num_heads=4, mlp_dim=128
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = arg or "omninet"
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
        config.model_name = "omninet_vit"
        config.model = ml_collections.ConfigDict(
            dict(
                **_SIZE,
                partition_size=2 if variant == "partitioned" else None,
                omni_attention="softmax" if variant == "softmax" else "performer",
                num_features=64,
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
    config.num_train_steps = 10 if smoke else 1000
    config.log_every = 5 if smoke else 100
    config.eval_every = 10 if smoke else 500
    config.checkpoint_every = 10 if smoke else 500
    config.seed = 0
    return config
