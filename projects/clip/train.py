"""Contrastive training of a small CLIP on digit-caption pairs, with zero-shot evaluation.

`config.trainer` of the configs: `scenic-eqx train --config projects/clip/configs/digits.py
--workdir DIR` calls `train(config, DIR)`. It is `run.train` (the same config keys) given
a model built without a classifier head and an evaluation that `loops.fit` runs: a
zero-shot classification of the held-out digits at each evaluation, every
`config.eval_every` steps (logged as `zero_shot_accuracy`, ...), from prompts naming each
digit (`digit_captions.ZERO_SHOT_TEMPLATES`). At the end the held-out pairs are evaluated
(the contrastive loss and the retrieval recalls over all of them) and so are the held-out
digits, zero-shot.
"""

import os

import jax
import ml_collections

from scenic_eqx import loops, nn, run, tasks

_HERE = os.path.dirname(os.path.abspath(__file__))
digit_captions = run.import_file(os.path.join(_HERE, "digit_captions.py"))


def zero_shot_evaluation(config: ml_collections.ConfigDict) -> loops.PeriodicEvaluation:
    """The zero-shot classification of the held-out digits, as `fit` runs it."""
    class_tokens = tasks.ZeroShotClassifier.prompt_tokens(
        digit_captions.NAMES, digit_captions.ZERO_SHOT_TEMPLATES, digit_captions.make_tokenizer()
    )
    digits = digit_captions.held_out_digits(
        eval_batch_size=config.eval_batch_size // jax.process_count(),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

    def evaluate(model, model_state, mesh):
        del model_state  # the model has none
        classifier = tasks.ZeroShotClassifier(model, class_tokens)
        return loops.evaluate(classifier, tasks.ClassificationTask(), digits, mesh=mesh)

    return loops.PeriodicEvaluation("zero_shot", config.eval_every, evaluate)


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains in `workdir` (resuming from its checkpoint, if any); returns the test metrics.

    `run.train` with a model built without a classifier head and the zero-shot
    evaluation; `workdir/test_metrics.json` holds the contrastive task's metrics on the
    held-out pairs and `zero_shot_<name>` of the held-out digits.
    """
    # A dual encoder has no classifier head: no `num_classes`.
    model = nn.create(config.model_name, num_classes=None, **config.model, key=jax.random.key(config.seed))
    return run.train(config, workdir, model=model, evaluations=[zero_shot_evaluation(config)])
