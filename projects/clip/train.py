"""Contrastive training of a small CLIP on digit-caption pairs, with zero-shot evaluation.

`config.trainer` of the configs: `scenic-eqx train --config projects/clip/configs/digits.py
--workdir DIR` calls `train(config, DIR)`. It is `run.train` (the same config keys) with
two changes: the model is built without a classifier head, and `loops.fit` also runs a
zero-shot classification of the held-out digits at each evaluation, every
`config.eval_every` steps (logged as `zero_shot_accuracy`, ...), from prompts naming each
digit (`digit_captions.ZERO_SHOT_TEMPLATES`). At the end the held-out pairs are evaluated
(the contrastive loss and the retrieval recalls over all of them) and so are the held-out
digits, zero-shot.
"""

import json
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

    Also writes them to `workdir/test_metrics.json`: the contrastive task's metrics on
    the held-out pairs and `zero_shot_<name>` of the held-out digits.
    """
    os.makedirs(workdir, exist_ok=True)
    mesh = run.build_mesh(config)
    dataset = run.build_dataset(config)
    # A dual encoder has no classifier head: no `num_classes`.
    model = nn.create(config.model_name, num_classes=None, **config.model, key=jax.random.key(config.seed))
    task = run.build_task(config)
    optimizer, schedule = run.build_optimizer(config)
    zero_shot = zero_shot_evaluation(config)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json(indent=2))
    state, _ = loops.fit(
        model,
        task,
        dataset.train_iter,
        optimizer=optimizer,
        num_steps=config.num_train_steps,
        key=jax.random.fold_in(jax.random.key(config.seed), 1),
        eval_batches=dataset.valid_iter,
        eval_every=config.eval_every,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        workdir=workdir,
        mesh=mesh,
        schedule=schedule,
        sharding=run.sharding_rules(config.get("sharding", "replicated")),
        precision=config.get("precision", "float32"),
        accumulate_steps=config.get("accumulate_steps", 1),
        steps_per_dispatch=config.get("steps_per_dispatch", 1),
        ema_decay=config.get("ema_decay"),
        peak_flops_per_device=config.get("peak_flops_per_device"),
        step_timeout_seconds=config.get("step_timeout_seconds"),
        debug_nans=config.get("debug_nans", False),
        async_checkpoints=config.get("async_checkpoints", False),
        evaluations=[zero_shot],
    )
    results = loops.evaluate(state.model, task, dataset.test_iter, mesh=mesh)
    results.update(zero_shot.run(state.model, state.model_state, mesh))
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "test_metrics.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results
