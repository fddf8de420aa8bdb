"""Fusion against each modality alone, on the synthetic audio-visual clips.

    scenic-eqx train --config projects/mbt/configs/synthetic.py:bottleneck --workdir workdirs/mbt_bottleneck
    scenic-eqx train --config projects/mbt/configs/synthetic.py:full --workdir workdirs/mbt_full
    scenic-eqx train --config projects/mbt/configs/synthetic.py:late --workdir workdirs/mbt_late
    scenic-eqx train --config projects/mbt/configs/synthetic.py:rgb --workdir workdirs/mbt_rgb
    scenic-eqx train --config projects/mbt/configs/synthetic.py:spectrogram --workdir workdirs/mbt_spectrogram

The dataset `synthetic_audiovisual` (`synthetic_audiovisual.py`, made in memory): 1,024
training and 256 test clips, each 8 RGB frames of 16x16 in which a square moves left or
right and a 32x16 log-mel-like spectrogram in which a low or a high tone sounds. The
class (4) is the pair (direction, pitch) and the two are drawn independently, so a
model that sees one modality can reach 50% at best (its Bayes accuracy); with both it
can reach 100%. Every variant is the same MBT (hidden size 32, 4 layers, 2x4x4 tubelets,
4x4 spectrogram patches) trained the same way (400 steps of batch 32, AdamW, warmup +
cosine to 3e-3); the argument picks what it sees and how it fuses:

- `bottleneck` (the default): both modalities, fused from layer 2 through 4 bottleneck tokens;
- `full`: both, every token attending to every token from layer 2;
- `late`: both, never attending to each other, their CLS logits averaged;
- `rgb`, `spectrogram`: one modality alone.

The measured test accuracies are in projects/mbt/README.md. `get_config("smoke")` is
the bottleneck variant on 64 clips for one step, for tests.
"""

import os

import ml_collections

from scenic_eqx import run

_PROJECT = os.path.join(os.path.dirname(__file__), "..")
run.import_file(os.path.join(_PROJECT, "model.py"))
run.import_file(os.path.join(_PROJECT, "synthetic_audiovisual.py"))

BOTH = ("rgb", "spectrogram")
VARIANTS = {
    "bottleneck": dict(modalities=BOTH, fusion="bottleneck"),
    "full": dict(modalities=BOTH, fusion="full"),
    "late": dict(modalities=BOTH, fusion="late"),
    "rgb": dict(modalities=("rgb",), fusion="late"),
    "spectrogram": dict(modalities=("spectrogram",), fusion="late"),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = "bottleneck" if arg in (None, "smoke") else arg
    if variant not in VARIANTS:
        raise ValueError(
            f"`get_config`'s argument must be one of {(*VARIANTS, 'smoke')} or None. Received: {arg!r}."
        )
    config = ml_collections.ConfigDict()
    config.dataset_name = "synthetic_audiovisual"
    sizes = dict(num_frames=8, image_size=16, spectrogram_frames=32, num_mel_bins=16)
    config.dataset = ml_collections.ConfigDict(dict(num_train=1024, num_test=256, **sizes))
    config.batch_size = 32
    config.eval_batch_size = 64
    config.model_name = "mbt"
    config.model = ml_collections.ConfigDict(
        dict(
            **VARIANTS[variant],
            fusion_layer=2,
            num_bottlenecks=4,
            hidden_size=32,
            num_layers=4,
            num_heads=2,
            mlp_dim=64,
            tubelet_size=(2, 4, 4),
            spectrogram_patch_size=(4, 4),
            **sizes,
        )
    )
    config.task_name = "classification"
    config.task = ml_collections.ConfigDict()
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=1e-4))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(dict(base_learning_rate=3e-3, warmup_steps=20))
    config.grad_clip_norm = 1.0
    config.num_train_steps = 400
    config.log_every = 50
    config.eval_every = 200
    config.checkpoint_every = 200
    config.seed = 0
    if arg == "smoke":
        config.dataset.num_train, config.dataset.num_test = 64, 32
        config.batch_size = config.eval_batch_size = 16
        config.num_train_steps = config.log_every = config.eval_every = config.checkpoint_every = 1
        config.schedule_kwargs.warmup_steps = 0
    return config
