"""SIGTERM and Ctrl-C, sent for real to this process in the middle of `fit`: the current
step finishes, is saved, and training stops; the resumed run is bitwise the uninterrupted one."""

import os
import signal

import jax
import numpy as np
import pytest
from tiny_models import DropoutMLP, params, run

from scenic_eqx import loops


class SignalAt:
    """A callback sending `signum` to this process after `step` (`times` times)."""

    def __init__(self, step, signum, times=1):
        self.step, self.signum, self.times = step, signum, times

    def __call__(self, step, record, state):
        if step == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


def test_sigterm_saves_the_step_reached_and_the_resumed_run_is_bitwise_the_same(tmp_path):
    model = DropoutMLP(key=jax.random.key(0))
    uninterrupted, full_history = run(model, 10, log_every=1)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(loops.Preempted) as preempted:
        run(
            model,
            10,
            log_every=1,
            workdir=tmp_path,
            checkpoint_every=4,
            callbacks=[SignalAt(6, signal.SIGTERM)],
        )
    assert preempted.value.code == loops.PREEMPTED_EXIT_CODE == 143 and preempted.value.step == 6
    assert "saved a checkpoint at step 6" in str(preempted.value)
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
    assert loops.Checkpointer(tmp_path / "checkpoints").all_steps() == [4, 6]
    resumed, history = run(model, 10, log_every=1, workdir=tmp_path, checkpoint_every=4)
    assert [h["step"] for h in history] == [7, 8, 9, 10]  # no step done twice
    for a, b in zip(params(resumed), params(uninterrupted)):
        np.testing.assert_array_equal(a, b)
    assert [h["loss"] for h in history] == [h["loss"] for h in full_history[6:]]


def test_sigterm_at_a_checkpoint_step_saves_it_once(tmp_path):
    model = DropoutMLP(key=jax.random.key(0))
    with pytest.raises(loops.Preempted, match="step 4"):
        run(
            model,
            10,
            log_every=2,
            workdir=tmp_path,
            checkpoint_every=4,
            callbacks=[SignalAt(4, signal.SIGTERM)],
        )
    assert loops.Checkpointer(tmp_path / "checkpoints").all_steps() == [4]


def test_sigterm_without_a_workdir_stops_after_the_step():
    with pytest.raises(loops.Preempted) as preempted:
        run(DropoutMLP(key=jax.random.key(0)), 10, log_every=1, callbacks=[SignalAt(3, signal.SIGTERM)])
    assert preempted.value.step == 3 and preempted.value.code == 143
    assert "stopped at step 3" in str(preempted.value)


def test_ctrl_c_saves_then_raises_keyboard_interrupt(tmp_path):
    model = DropoutMLP(key=jax.random.key(0))
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="after step 5"):
        run(
            model,
            10,
            log_every=1,
            workdir=tmp_path,
            checkpoint_every=4,
            callbacks=[SignalAt(5, signal.SIGINT)],
        )
    assert signal.getsignal(signal.SIGINT) is before
    assert loops.Checkpointer(tmp_path / "checkpoints").all_steps() == [4, 5]


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path):
    model = DropoutMLP(key=jax.random.key(0))
    with pytest.raises(KeyboardInterrupt):
        run(model, 10, log_every=1, workdir=tmp_path, checkpoint_every=4,
            callbacks=[SignalAt(5, signal.SIGINT, times=2)])  # fmt: skip
    assert loops.Checkpointer(tmp_path / "checkpoints").all_steps() == [4]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
