"""Co-training batches: one batch of every dataset per step, resumable; evaluation passes
of unequal lengths padded so that each dataset counts exactly its own examples."""

import numpy as np
import pytest

from scenic_eqx import data


def _dataset(n_train, n_test, *, channels, num_classes, seed, batch_size=4, eval_batch_size=4):
    rng = np.random.default_rng(seed)
    inputs = rng.random((n_train + n_test, 3, 3, channels)).astype(np.float32)
    labels = (np.arange(n_train + n_test) % num_classes).astype(np.int32)
    return data.from_arrays(
        (inputs[:n_train], labels[:n_train]),
        (inputs[n_train:], labels[n_train:]),
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        shuffle_seed=seed,
        process_index=0,
        process_count=1,
    )


def _pair():
    return {
        "a": _dataset(20, 10, channels=1, num_classes=3, seed=1),
        "b": _dataset(12, 3, channels=2, num_classes=2, seed=2),
    }


def test_a_batch_groups_each_entry_by_dataset_and_matches_each_datasets_own_batch():
    datasets = _pair()
    batches = data.co_training_batches({name: ds.train_iter for name, ds in datasets.items()})
    alone = {name: _pair()[name].train_iter for name in datasets}
    for _ in range(5):
        batch = next(batches)
        assert set(batch) == {"inputs", "label", "batch_mask"}
        for name in ("a", "b"):
            own = next(alone[name])
            for key in ("inputs", "label", "batch_mask"):
                np.testing.assert_array_equal(batch[key][name], own[key])
    assert batch["inputs"]["a"].shape == (4, 3, 3, 1) and batch["inputs"]["b"].shape == (4, 3, 3, 2)


def test_a_batch_without_a_mask_gets_one_of_ones():
    plain = iter([{"inputs": np.zeros((4, 3)), "label": np.zeros((4,), np.int32)}] * 3)
    batch = next(data.co_training_batches({"a": plain, "b": _pair()["b"].train_iter}))
    np.testing.assert_array_equal(batch["batch_mask"]["a"], np.ones(4, np.float32))


def test_resumes_every_dataset_where_it_stood(tmp_path):
    def fresh():
        return data.co_training_batches({name: ds.train_iter for name, ds in _pair().items()})

    batches = fresh()
    assert isinstance(batches, data.ResumableIterator)
    for _ in range(7):  # past the end of b's first epoch (3 batches)
        next(batches)
    batches.save_state(str(tmp_path / "state"))
    expected = [next(batches) for _ in range(4)]
    restored = fresh()
    restored.restore_state(str(tmp_path / "state"))
    for want, got in zip(expected, [next(restored) for _ in range(4)]):
        for key in want:
            for name in ("a", "b"):
                np.testing.assert_array_equal(got[key][name], want[key][name])


def test_a_state_of_other_datasets_is_refused(tmp_path):
    datasets = _pair()
    batches = data.co_training_batches({name: ds.train_iter for name, ds in datasets.items()})
    batches.save_state(str(tmp_path / "state"))
    other = data.co_training_batches({"a": _pair()["a"].train_iter, "c": _pair()["b"].train_iter})
    with pytest.raises(ValueError, match="co_training_datasets"):
        other.restore_state(str(tmp_path / "state"))


def test_a_dataset_without_saved_positions_makes_a_replayed_iterator():
    plain = (batch for batch in _pair()["a"].train_iter)
    batches = data.co_training_batches({"a": plain, "b": _pair()["b"].train_iter})
    assert not isinstance(batches, data.ResumableIterator)
    assert next(batches)["inputs"]["a"].shape == (4, 3, 3, 1)


def test_bad_mixtures_are_named():
    datasets = _pair()
    with pytest.raises(TypeError, match="`train_iters` must be a dict"):
        data.co_training_batches([datasets["a"].train_iter])
    with pytest.raises(ValueError, match="letters, digits and underscores.*'my-data'"):
        data.co_training_batches({"my-data": datasets["a"].train_iter})
    with pytest.raises(ValueError, match="at least one dataset"):
        data.co_training_batches({})
    uneven = _dataset(20, 4, channels=1, num_classes=3, seed=3, batch_size=5)
    with pytest.raises(ValueError, match=r"same size.*'a': 4, 'b': 5"):
        next(data.co_training_batches({"a": datasets["a"].train_iter, "b": uneven.train_iter}))
    finite = iter([next(datasets["b"].train_iter)])
    batches = data.co_training_batches({"a": datasets["a"].train_iter, "b": finite})
    next(batches)
    with pytest.raises(ValueError, match="'b' ran out at co-training batch 2"):
        next(batches)


def test_evaluation_pads_the_shorter_pass_with_examples_that_count_nowhere():
    datasets = _pair()  # a: 10 test examples (3 batches of 4), b: 3 (1 batch)
    passes = data.co_training_eval_batches({name: ds.test_iter for name, ds in datasets.items()})
    for _ in range(2):  # re-iterable
        batches = list(passes)
        assert len(batches) == 3
        a_batches = list(datasets["a"].test_iter)
        for batch, own in zip(batches, a_batches):
            np.testing.assert_array_equal(batch["inputs"]["a"], own["inputs"])
            np.testing.assert_array_equal(batch["batch_mask"]["a"], own["batch_mask"])
        (b_batch,) = list(datasets["b"].test_iter)
        np.testing.assert_array_equal(batches[0]["label"]["b"], b_batch["label"])
        for padding in batches[1:]:
            assert padding["inputs"]["b"].shape == (4, 3, 3, 2)
            assert not padding["inputs"]["b"].any() and not padding["batch_mask"]["b"].any()
        total = {name: sum(float(batch["batch_mask"][name].sum()) for batch in batches) for name in "ab"}
        assert total == {"a": 10.0, "b": 3.0}


def test_evaluation_takes_callables_and_refuses_an_empty_pass():
    datasets = _pair()
    passes = data.co_training_eval_batches(
        {"a": lambda: datasets["a"].test_iter, "b": datasets["b"].test_iter}
    )
    assert len(list(passes)) == 3
    with pytest.raises(ValueError, match="'b' gave no evaluation batch"):
        list(data.co_training_eval_batches({"a": datasets["a"].test_iter, "b": []}))
