"""Train the template's model on its task, then print the test metrics.

    .venv/bin/python projects/template/main.py --workdir workdirs/template [--num_steps N]

This is the script path: it calls `scenic_eqx.loops.fit` itself, so every line of the
run is here to read and change. Run it again on the same `--workdir` and it resumes
from the newest checkpoint.
"""

import argparse
import importlib.util
import json
import os
import sys

import jax
import ml_collections
import optax

from scenic_eqx import data, loops

# The project's own modules sit beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import PatchClassifier  # noqa: E402
from task import ConfidenceClassificationTask  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "smoke.py")


def load_config(path: str) -> ml_collections.ConfigDict:
    """`get_config()` of the Python file `path`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`--config` must be an existing Python file. Received: {path!r}.")
    spec = importlib.util.spec_from_file_location("template_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def build_optimizer(
    config: ml_collections.ConfigDict,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW on a linear warmup and cosine decay, after global-norm gradient clipping.

    Change the optimizer here, in Python: any optax transformation works.
    """
    schedule = loops.warmup_cosine_decay(num_steps=config.num_train_steps, **config.schedule_kwargs)
    optimizer = optax.adamw(schedule, **config.optimizer_kwargs)
    return loops.clip_by_global_norm(optimizer, config.grad_clip_norm), schedule


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains in `workdir` (resuming from its checkpoint, if any) and evaluates on test.

    Also writes the test metrics to `workdir/test_metrics.json`.

    Returns:
        The test metrics, `{name: value}`.
    """
    dataset = data.get_dataset(
        config.dataset_name,
        batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        shuffle_seed=config.seed,
        **config.dataset,
    )
    model_key, run_key = jax.random.split(jax.random.key(config.seed))
    model = PatchClassifier(dataset.meta_data["num_classes"], **config.model, key=model_key)
    task = ConfidenceClassificationTask(**config.task)
    optimizer, schedule = build_optimizer(config)
    state, _ = loops.fit(
        model,
        task,
        dataset.train_iter,
        optimizer=optimizer,
        num_steps=config.num_train_steps,
        key=run_key,
        eval_batches=dataset.valid_iter,
        eval_every=config.eval_every,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        workdir=workdir,
        schedule=schedule,
    )
    results = loops.evaluate(state.model, task, dataset.test_iter)
    with open(os.path.join(workdir, "test_metrics.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", required=True, help="checkpoints, metrics.jsonl and test_metrics.json go here"
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="a config file (default: configs/smoke.py)")
    parser.add_argument("--num_steps", type=int, help="replaces the config's num_train_steps")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    if args.num_steps is not None:
        config.num_train_steps = args.num_steps
    results = train(config, args.workdir)
    print("test metrics:", json.dumps(results))


if __name__ == "__main__":
    main()
