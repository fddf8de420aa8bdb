"""A resumed run restores the input's position instead of replaying consumed batches."""

import os

import jax
import numpy as np
import optax
import pytest
from tiny_models import DropoutMLP, params

from scenic_eqx import data, loops, tasks


class Counting:
    """A resumable iterator that counts the batches taken from it."""

    def __init__(self, inner):
        self.inner, self.taken = inner, 0

    def __iter__(self):
        return self

    def __next__(self):
        self.taken += 1
        return next(self.inner)

    def save_state(self, directory):
        self.inner.save_state(directory)

    def restore_state(self, directory):
        self.inner.restore_state(directory)


def train_iter(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5)).astype(np.int32)
    dataset = data.from_arrays((x, y), (x[:16], y[:16]), batch_size=16, num_classes=3)
    return Counting(dataset.train_iter)


def train(batches, num_steps, **kwargs):
    return loops.fit(
        DropoutMLP(key=jax.random.key(0)), tasks.ClassificationTask(), batches,
        optimizer=optax.adam(1e-2), num_steps=num_steps, key=jax.random.key(3), log_every=1,
        progress=False, **kwargs,
    )  # fmt: skip


class StopAt:
    def __init__(self, step):
        self.step = step

    def __call__(self, step, record, state):
        if step == self.step:
            raise KeyboardInterrupt


def test_resume_restores_the_position_without_replay(tmp_path):
    assert isinstance(train_iter().inner, data.ResumableIterator)
    uninterrupted, _ = train(train_iter(), 10)
    with pytest.raises(KeyboardInterrupt):
        train(train_iter(), 10, workdir=tmp_path, checkpoint_every=3, callbacks=[StopAt(7)])
    assert sorted(os.listdir(tmp_path / "input_state")) == ["3", "6"]  # max_checkpoints_to_keep
    batches = train_iter()
    resumed, history = train(batches, 10, workdir=tmp_path, checkpoint_every=3)
    assert [h["step"] for h in history] == [7, 8, 9, 10]
    assert batches.taken == 1 + 4  # the batch peeked for shapes, then steps 7-10: no replay
    for a, b in zip(params(resumed), params(uninterrupted)):
        np.testing.assert_array_equal(a, b)  # bitwise
    assert sorted(os.listdir(tmp_path / "input_state")) == ["10", "6", "9"]


def test_a_plain_iterable_is_replayed(tmp_path):
    batches = [next(train_iter().inner) for _ in range(1)] * 10
    with pytest.raises(KeyboardInterrupt):
        train(list(batches), 10, workdir=tmp_path, checkpoint_every=3, callbacks=[StopAt(4)])
    assert not (tmp_path / "input_state").exists()
    resumed, history = train(list(batches), 10, workdir=tmp_path, checkpoint_every=3)
    assert [h["step"] for h in history] == [4, 5, 6, 7, 8, 9, 10]


def test_a_state_of_other_data_is_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(train_iter(), 10, workdir=tmp_path, checkpoint_every=3, callbacks=[StopAt(4)])
    other = data.from_arrays((np.zeros((32, 4), np.float32), np.zeros(32, np.int32)),
                             (np.zeros((8, 4), np.float32), np.zeros(8, np.int32)),
                             batch_size=8, num_classes=3)  # fmt: skip
    with pytest.raises(ValueError, match="batch"):
        train(other.train_iter, 10, workdir=tmp_path, checkpoint_every=3)
