"""Co-training through `fit` on two real datasets (scikit-learn's digits: the digit, and
the parity of the mirrored digit on other images): a dataset of weight 0 leaves the
other's single-dataset run exactly as it was while both are logged; both weighted, both
learn; evaluation counts each dataset's own examples; a resumed run equals an
uninterrupted one."""

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

from scenic_eqx import data, loops, nn, tasks

_X, _Y = load_digits(return_X_y=True)
_X = (_X / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
_Y = _Y.astype(np.int32)
STEPS = 40


def _datasets():
    """Fresh datasets (their iterators start over): 397 and 150 test examples."""
    common = {"batch_size": 32, "eval_batch_size": 40, "process_index": 0, "process_count": 1}
    digits = data.from_arrays((_X[:800], _Y[:800]), (_X[1400:], _Y[1400:]), **common)
    mirrored, parity = _X[800:1550, :, ::-1], _Y[800:1550] % 2
    parity = data.from_arrays(
        (mirrored[:600], parity[:600]), (mirrored[600:], parity[600:]), shuffle_seed=3, **common
    )
    return {"digits": digits, "parity": parity}


def _model():
    k_model, k_head = jax.random.split(jax.random.key(0))
    base = nn.FullyConnected(10, (8, 8, 1), hidden_sizes=(32,), key=k_model)
    return nn.PerDatasetHeads(base, {"digits": base.head, "parity": eqx.nn.Linear(32, 2, key=k_head)})


def _co_train(weights, num_steps=STEPS, **kwargs):
    datasets = _datasets()
    task = tasks.CoTrainingTask({name: tasks.ClassificationTask() for name in datasets}, weights)
    return loops.fit(
        _model(),
        task,
        data.co_training_batches({name: ds.train_iter for name, ds in datasets.items()}),
        optimizer=optax.adam(1e-2),
        num_steps=num_steps,
        key=jax.random.key(1),
        log_every=20,
        eval_batches=data.co_training_eval_batches({name: ds.test_iter for name, ds in datasets.items()}),
        eval_every=20,
        progress=False,
        **kwargs,
    )


def _single(name):
    dataset = _datasets()[name]
    return loops.fit(
        _model().view(name),
        tasks.ClassificationTask(),
        dataset.train_iter,
        optimizer=optax.adam(1e-2),
        num_steps=STEPS,
        key=jax.random.key(1),
        log_every=20,
        eval_batches=dataset.test_iter,
        eval_every=20,
        progress=False,
    )


@pytest.mark.parametrize("trained, idle", [("digits", "parity"), ("parity", "digits")])
def test_a_dataset_of_weight_zero_leaves_the_others_single_run_as_it_was_and_both_are_logged(trained, idle):
    state, history = _co_train({trained: 1.0, idle: 0.0})
    single_state, single_history = _single(trained)
    for got, want in zip(
        jax.tree.leaves(eqx.filter(state.model.view(trained), eqx.is_array)),
        jax.tree.leaves(eqx.filter(single_state.model, eqx.is_array)),
    ):
        np.testing.assert_array_equal(got, want)
    for record, single_record in zip(history, single_history):
        for metric in ("accuracy", "loss", "eval_accuracy", "eval_loss"):
            prefix, name = ("eval_", metric[5:]) if metric.startswith("eval_") else ("", metric)
            assert record[f"{prefix}{trained}_{name}"] == single_record[metric], metric
        assert {f"{idle}_accuracy", f"eval_{idle}_accuracy", f"eval_{idle}_loss"} <= set(record)
    # The idle head stayed as initialised; its dataset is scored at chance.
    np.testing.assert_array_equal(state.model.heads[idle].weight, _model().heads[idle].weight)


def test_co_trained_datasets_both_learn_and_are_evaluated_on_exactly_their_own_examples():
    state, history = _co_train({"digits": 1.0, "parity": 0.5})
    final = history[-1]
    assert final["eval_digits_accuracy"] > 0.75 and final["eval_parity_accuracy"] > 0.75, final
    datasets = _datasets()
    for name, dataset in datasets.items():
        alone = loops.evaluate(state.model.view(name), tasks.ClassificationTask(), dataset.test_iter)
        assert final[f"eval_{name}_accuracy"] == pytest.approx(alone["accuracy"], abs=1e-6)
        assert final[f"eval_{name}_loss"] == pytest.approx(alone["loss"], rel=1e-5)
    # Examples/s counts both datasets' examples.
    assert final["examples_per_sec"] > 0


def test_a_resumed_co_training_run_equals_the_uninterrupted_one(tmp_path):
    weights = {"digits": 1.0, "parity": 1.0}
    uninterrupted, _ = _co_train(weights)
    _co_train(weights, num_steps=STEPS // 2, workdir=tmp_path, checkpoint_every=STEPS // 2)
    # A fresh process's view: new iterators, positions read back from the workdir.
    assert (tmp_path / "input_state").is_dir()
    resumed, history = _co_train(weights, workdir=tmp_path, checkpoint_every=STEPS // 2)
    for got, want in zip(
        jax.tree.leaves(eqx.filter(resumed.model, eqx.is_array)),
        jax.tree.leaves(eqx.filter(uninterrupted.model, eqx.is_array)),
    ):
        np.testing.assert_array_equal(got, want)
    assert history[-1]["step"] == STEPS
