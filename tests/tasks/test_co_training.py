"""CoTrainingTask: the weighted sum of each dataset's loss, every dataset's metrics under
its name; a dataset of weight 0 takes no part in the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scenic_eqx import tasks

RNG = np.random.default_rng(0)
OUTPUTS = {
    "digits": jnp.asarray(RNG.normal(size=(4, 10)), jnp.float32),
    "pets": jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32),
}
BATCHES = {
    "digits": {"label": jnp.array([1, 7, 3, 0]), "batch_mask": jnp.array([1.0, 1.0, 1.0, 0.0])},
    "pets": {"label": jnp.array([2, 0, 1, 1]), "batch_mask": jnp.ones(4)},
}
BATCH = {
    "inputs": {name: jnp.zeros((4, 2)) for name in BATCHES},
    "label": {name: batch["label"] for name, batch in BATCHES.items()},
    "batch_mask": {name: batch["batch_mask"] for name, batch in BATCHES.items()},
}
TASKS = {"digits": tasks.ClassificationTask(), "pets": tasks.ClassificationTask(label_smoothing=0.1)}

_loss_and_metrics = jax.jit(
    lambda task, outputs, batch: (task.loss(outputs, batch), task.metrics(outputs, batch))
)


def _own(name):
    return _loss_and_metrics(TASKS[name], OUTPUTS[name], BATCHES[name])


def test_the_loss_is_the_weighted_sum_of_each_datasets_loss():
    task = tasks.CoTrainingTask(TASKS, {"digits": 0.5, "pets": 2.0})
    loss, _ = _loss_and_metrics(task, OUTPUTS, BATCH)
    expected = 0.5 * float(_own("digits")[0]) + 2.0 * float(_own("pets")[0])
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    unweighted, _ = _loss_and_metrics(tasks.CoTrainingTask(TASKS), OUTPUTS, BATCH)
    np.testing.assert_allclose(
        float(unweighted), float(_own("digits")[0]) + float(_own("pets")[0]), rtol=1e-6
    )


def test_every_datasets_metrics_are_reported_under_its_name_and_summarized_by_its_task():
    task = tasks.CoTrainingTask(TASKS, {"digits": 1.0, "pets": 0.0})
    _, metrics = _loss_and_metrics(task, OUTPUTS, BATCH)
    for name in TASKS:
        own = _own(name)[1]
        for metric, (value, norm) in own.items():
            np.testing.assert_allclose(metrics[f"{name}_{metric}"][0], value, rtol=1e-6)
            np.testing.assert_allclose(metrics[f"{name}_{metric}"][1], norm)
    summary = task.summarize(jax.device_get(metrics))
    assert summary["digits_accuracy"] == pytest.approx(
        float(np.mean(np.argmax(OUTPUTS["digits"][:3], -1) == np.array([1, 7, 3])))
    )
    assert set(summary) == {f"{name}_{metric}" for name in TASKS for metric in _own(name)[1]}


def test_a_dataset_of_weight_zero_takes_no_part_in_the_loss_or_its_gradient():
    task = tasks.CoTrainingTask(TASKS, {"digits": 1.0, "pets": 0.0})
    broken = {**OUTPUTS, "pets": jnp.full((4, 3), jnp.nan)}
    loss, grads = jax.jit(jax.value_and_grad(task.loss))(broken, BATCH)
    assert float(loss) == float(_own("digits")[0])  # exactly the other dataset's loss
    assert not np.any(grads["pets"]) and np.all(np.isfinite(grads["digits"]))


@pytest.mark.parametrize(
    "tasks_, weights, error, match",
    [
        ({}, None, ValueError, "non-empty dict"),
        ({"my-data": tasks.ClassificationTask()}, None, ValueError, "letters, digits and underscores"),
        # (beartype's check of the annotation, or the task's own where checks are off)
        ({"a": "classification"}, None, TypeError, r"parameter 'tasks'|`tasks\['a'\]` must be a task"),
        ({"a": tasks.ClassificationTask()}, {"b": 1.0}, ValueError, "a weight to each dataset"),
        ({"a": tasks.ClassificationTask()}, {"a": -1.0}, ValueError, "non-negative number"),
        ({"a": tasks.ClassificationTask()}, {"a": 0.0}, ValueError, "at least one weight must be positive"),
        (
            {"a": tasks.ClassificationTask(), "a_b": tasks.ClassificationTask()},
            None,
            ValueError,
            "could clash",
        ),
        ({"coco": tasks.DetectionTask()}, None, ValueError, "scores with an `Evaluator`"),
    ],
)
def test_bad_arguments_are_named(tasks_, weights, error, match):
    with pytest.raises(error, match=match):
        tasks.CoTrainingTask(tasks_, weights)


def test_outputs_that_are_not_by_dataset_are_refused():
    task = tasks.CoTrainingTask(TASKS)
    with pytest.raises(ValueError, match="outputs must be a dict by dataset name with 'digits'"):
        task.loss(OUTPUTS["digits"], BATCH)
