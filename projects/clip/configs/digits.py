"""A small CLIP trained contrastively on digit-caption pairs, then zero-shot on held-out digits.

    scenic-eqx train --config projects/clip/configs/digits.py --workdir workdirs/clip_digits

The pairs (`digit_captions.py`): 1,437 scikit-learn digits, each with six captions
naming it ("a photo of the digit seven.", "a handwritten 7.", ...); 360 held-out digits.
A small `nn.CLIP` (2-block image and text transformers of width 64, 64-d embeddings, a
word-level vocabulary: `tokenizer.py`) is trained with CLIP's symmetric InfoNCE
(`tasks.ContrastiveTask`) over batches of 128 pairs for 600 steps. At each evaluation
(every `eval_every` steps) the held-out digits are also classified zero-shot from prompts
naming each digit (`digit_captions.ZERO_SHOT_TEMPLATES`), logged as `zero_shot_accuracy`.
Reaches 96.1% zero-shot top-1 accuracy on the held-out digits (chance: 10%), in 72 s of
CPU time (see projects/clip/README.md).
"""

import os

import ml_collections

from scenic_eqx import run

_PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
digit_captions = run.import_file(os.path.join(_PROJECT, "digit_captions.py"))  # registers `digit_captions`


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset_name = "digit_captions"
    config.dataset = ml_collections.ConfigDict()
    config.batch_size = 128
    config.eval_batch_size = 120
    config.model_name = "clip_tiny"  # `nn.CLIP`, resized by `config.model`
    config.model = ml_collections.ConfigDict(
        dict(
            embed_dim=64,
            image_size=8,
            patch_size=2,
            in_channels=1,
            vision_width=64,
            vision_layers=2,
            vision_heads=4,
            vocab_size=digit_captions.make_tokenizer().vocab_size,
            context_length=digit_captions.CONTEXT_LENGTH,
            text_width=64,
            text_layers=2,
            text_heads=4,
        )
    )
    config.task_name = "contrastive"
    config.task = ml_collections.ConfigDict(dict(loss_type="softmax", recall_at=(1, 5)))
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict(dict(weight_decay=1e-4))
    config.schedule = "warmup_cosine_decay"
    config.schedule_kwargs = ml_collections.ConfigDict(dict(base_learning_rate=1e-3, warmup_steps=50))
    config.grad_clip_norm = 1.0
    config.num_train_steps = 600
    config.log_every = 50
    config.eval_every = 200  # the held-out pairs, and the held-out digits zero-shot
    config.checkpoint_every = 200
    config.seed = 0
    config.trainer = os.path.join(_PROJECT, "train.py") + ":train"
    return config
