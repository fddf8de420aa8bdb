"""A run restarted on its workdir: it says where it resumes, `metrics.jsonl` keeps each step
once after a crash, a finished run is returned as it is, a longer `num_steps` extends it
(with a warning about the schedule), and a checkpoint of another model or optimizer is an
error naming the checkpoint and the first array that differs."""

import contextlib
import io
import json
import logging
import os
import pathlib
import re
import shutil
import types

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
from tiny_models import make_batches, params

from scenic_eqx import loops, tasks
from scenic_eqx.loops._logging import RunLogger, drop_records_from, read_history
from scenic_eqx.loops._manifest import check_structure

NUM_STEPS = 6


class WidthMLP(eqx.Module):
    """A tiny classifier whose hidden width is a constructor argument."""

    hidden: eqx.nn.Linear
    head: eqx.nn.Linear

    def __init__(self, width: int = 16, *, key):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(4, width, key=k1)
        self.head = eqx.nn.Linear(width, 3, key=k2)

    def __call__(self, x, *, key=None):
        return self.head(jax.nn.relu(self.hidden(x)))


def schedule_for(num_steps: int) -> optax.Schedule:
    return loops.warmup_cosine_decay(1e-2, num_steps=num_steps, warmup_steps=2)


def fit(workdir, num_steps=NUM_STEPS, *, width=16, optimizer=None, **kwargs):
    """`loops.fit` of a `WidthMLP` on 10 batches, Adam on a schedule built from `num_steps`."""
    schedule = schedule_for(num_steps)
    return loops.fit(
        WidthMLP(width, key=jax.random.key(0)),
        tasks.ClassificationTask(),
        make_batches(10),
        optimizer=optax.adam(schedule) if optimizer is None else optimizer,
        num_steps=num_steps,
        key=jax.random.key(1),
        log_every=1,
        checkpoint_every=2,
        workdir=workdir,
        schedule=schedule,
        progress=False,
        **kwargs,
    )


@contextlib.contextmanager
def captured():
    """What the block said: `(level, message)` of each `scenic_eqx` log record, and stderr."""
    said = types.SimpleNamespace(logs=[], stderr="")

    class Collect(logging.Handler):
        def emit(self, record):
            said.logs.append((record.levelno, record.getMessage()))

    logger, handler, stderr = logging.getLogger("scenic_eqx"), Collect(), io.StringIO()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        with contextlib.redirect_stderr(stderr):
            yield said
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        said.stderr = stderr.getvalue()


def rows(workdir) -> list[dict]:
    return [json.loads(line) for line in pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines()]


class CrashAt:
    """A callback that fails at `step`, after that step was logged and before it is checkpointed."""

    def __init__(self, step):
        self.step = step

    def __call__(self, step, record, state):
        if step == self.step:
            raise RuntimeError(f"crash at step {step}")


def collect_into(records: list):
    return lambda step, record, state: records.append({"step": step, **record})


@pytest.fixture(scope="module")
def crashed_then_resumed(tmp_path_factory):
    """A run that crashed after logging step 5 (its latest checkpoint: step 4), then resumed to the end."""
    workdir = tmp_path_factory.mktemp("run")
    crashed_history = []
    with captured() as fresh_start, pytest.raises(RuntimeError, match="crash at step 5"):
        fit(workdir, callbacks=[collect_into(crashed_history), CrashAt(5)])
    assert loops.Checkpointer(workdir / "checkpoints").latest_step() == 4
    crashed_rows = rows(workdir)
    with captured() as resume:
        state, history = fit(workdir)
    return types.SimpleNamespace(
        workdir=workdir, crashed_history=crashed_history, crashed_rows=crashed_rows,
        fresh_start=fresh_start, resume=resume, state=state, history=history, rows=rows(workdir),
    )  # fmt: skip


@pytest.fixture
def finished_workdir(crashed_then_resumed, tmp_path):
    """A copy of the finished run's workdir."""
    return shutil.copytree(crashed_then_resumed.workdir, tmp_path / "run")


def test_a_resumed_run_says_where_it_resumed(crashed_then_resumed):
    run = crashed_then_resumed
    message = f"resumed from step 4 of {NUM_STEPS} (workdir {run.workdir})"
    assert run.resume.logs == [(logging.INFO, message)]  # same `num_steps`: no warning
    assert message + "\n" in run.resume.stderr
    assert run.fresh_start.logs == []  # a fresh start says nothing
    assert "resumed" not in run.fresh_start.stderr
    assert [h["step"] for h in run.history] == [5, 6]


def test_metrics_jsonl_has_each_step_once_after_a_crash_and_resume(crashed_then_resumed):
    run = crashed_then_resumed
    assert [r["step"] for r in run.crashed_rows] == [0, 1, 2, 3, 4, 5]
    assert [r["step"] for r in run.rows] == [0, 1, 2, 3, 4, 5, 6]
    assert run.rows[:5] == run.crashed_rows[:5]  # up to the checkpoint: kept as they were
    # Steps 5 and 6 are the resumed run's records (its own speed figures and compile time)...
    assert run.rows[5:] == run.history
    assert "compile_seconds" in run.rows[5]
    # ...and step 5 trains as it did before the crash (restored state and metric sums).
    assert run.rows[5]["loss"] == run.crashed_rows[5]["loss"]
    assert run.rows[5]["learning_rate"] == pytest.approx(float(schedule_for(NUM_STEPS)(4)))


def test_a_finished_run_returns_its_state_and_history_without_training(
    crashed_then_resumed, finished_workdir
):
    run = crashed_then_resumed
    jsonl_before = pathlib.Path(finished_workdir / "metrics.jsonl").read_text()

    def no_evaluation():
        raise AssertionError("a finished run evaluated")

    def no_callback(step, record, state):
        raise AssertionError(f"a finished run logged step {step}")

    with captured() as said:
        state, history = fit(finished_workdir, eval_batches=no_evaluation, callbacks=[no_callback])
    message = f"run already finished at step {NUM_STEPS} (workdir {finished_workdir})"
    assert said.logs == [(logging.INFO, message)]
    assert message in said.stderr
    assert int(state.step) == NUM_STEPS
    for a, b in zip(params(state), params(run.state), strict=True):
        np.testing.assert_array_equal(a, b)
    # The same type and entries as the runs that trained it returned, read back.
    assert isinstance(history, list) and all(isinstance(h, dict) for h in history)
    assert history == run.crashed_history[:4] + run.history
    assert pathlib.Path(finished_workdir / "metrics.jsonl").read_text() == jsonl_before  # nothing written
    assert loops.Checkpointer(finished_workdir / "checkpoints").all_steps() == [2, 4, 6]


def test_num_steps_below_the_checkpoint_is_an_error(finished_workdir):
    match = (
        rf"`num_steps` \(=3\) is below the step of the newest checkpoint in "
        rf"{re.escape(str(finished_workdir / 'checkpoints'))} \(6\).*Received: num_steps=3\."
    )
    with pytest.raises(ValueError, match=match):
        fit(finished_workdir, num_steps=3)


def test_extending_num_steps_continues_the_run_and_warns_of_the_schedule(
    crashed_then_resumed, finished_workdir
):
    assert json.loads(pathlib.Path(finished_workdir / "run.json").read_text()) == {"num_steps": NUM_STEPS}
    with captured() as said:
        state, history = fit(finished_workdir, num_steps=8)
    assert said.logs == [
        (logging.INFO, f"resumed from step 6 of 8 (workdir {finished_workdir})"),
        (
            logging.WARNING,
            "num_steps changed from 6 to 8: the learning-rate schedule is rebuilt for 8 steps "
            "and continues from step 6",
        ),
    ]
    # Shown by the logging handler (here the test's), so not printed a second time.
    assert "num_steps changed" not in said.stderr
    assert int(state.step) == 8
    assert [h["step"] for h in history] == [7, 8]
    # The rebuilt schedule, from the optimizer's restored step count on.
    new_schedule = schedule_for(8)
    assert [h["learning_rate"] for h in history] == pytest.approx(
        [float(new_schedule(6)), float(new_schedule(7))]
    )
    assert float(schedule_for(NUM_STEPS)(6)) == pytest.approx(0.0, abs=1e-9)  # the old schedule had ended
    assert float(new_schedule(6)) > 1e-3  # the new one jumps back up
    assert [r["step"] for r in rows(finished_workdir)] == list(range(9))
    assert json.loads(pathlib.Path(finished_workdir / "run.json").read_text()) == {"num_steps": 8}


def test_a_checkpoint_of_another_width_names_the_checkpoint_and_the_array(finished_workdir):
    checkpoints = re.escape(str(finished_workdir / "checkpoints"))
    with pytest.raises(ValueError) as error:
        fit(finished_workdir, width=32)
    assert re.match(
        rf"Checkpoint 6 in {checkpoints} does not match the state to restore: at "
        r"`train_state\.model\.hidden\.weight` the checkpoint has float32\[16, 4\], the state "
        r"float32\[32, 4\]\. It was written by another model, optimizer or precision",
        str(error.value),
    ), str(error.value)
    # A configuration error, not damage: nothing moved aside or rewritten.
    assert sorted(os.listdir(finished_workdir / "checkpoints")) == ["2", "4", "6"]
    assert json.loads(pathlib.Path(finished_workdir / "run.json").read_text()) == {"num_steps": NUM_STEPS}


def test_a_checkpoint_of_another_optimizer_names_the_checkpoint_and_the_array(finished_workdir):
    checkpoints = re.escape(str(finished_workdir / "checkpoints"))
    with pytest.raises(ValueError) as error:
        fit(finished_workdir, optimizer=optax.sgd(0.1))  # saved with Adam
    assert re.match(
        rf"Checkpoint 6 in {checkpoints} does not match the state to restore: "
        r"`train_state\.opt_state\[0\]\.count` is in the checkpoint but not in the state to "
        r"restore\. The checkpoint has \d+ arrays in `train_state`, the state \d+\.",
        str(error.value),
    ), str(error.value)


def test_a_structure_mismatch_names_the_first_array_that_differs_in_tree_order():
    saved = [(".a", np.zeros(2)), (".b", np.zeros(3)), (".c", np.zeros(1))]
    manifest = {
        "items": {"state": [{"path": p, "shape": list(x.shape), "dtype": str(x.dtype)} for p, x in saved]}
    }
    # `.inserted` comes first in tree order; `.c` (missing from the state) comes later.
    like = [(".a", np.zeros(2)), (".inserted", np.zeros(5)), (".b", np.zeros(3))]
    with pytest.raises(
        ValueError, match=r"`state\.inserted` is in the state to restore but not in the checkpoint"
    ):
        check_structure(manifest, "state", like, "Checkpoint 1 in /w/checkpoints")
    dropped = [(".a", np.zeros(2)), (".c", np.zeros(1))]
    with pytest.raises(ValueError, match=r"`state\.b` is in the checkpoint but not in the state to restore"):
        check_structure(manifest, "state", dropped, "Checkpoint 1 in /w/checkpoints")


def test_dropping_records_rewrites_metrics_jsonl_whole(tmp_path):
    lines = [
        {"step": 0, "num_params": 10.0},
        {"step": 2, "loss": 1.5},
        {"step": 4, "loss": "nan", "accuracy": 0.5},
        {"step": 6, "loss": 0.5},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"step": 8, "lo'  # cut short by a crash
    (tmp_path / "metrics.jsonl").write_text(text)
    os.chmod(tmp_path / "metrics.jsonl", 0o640)
    history = read_history(tmp_path, last_step=4)
    assert [h["step"] for h in history] == [2, 4]
    assert np.isnan(history[1]["loss"]) and history[1]["accuracy"] == 0.5
    assert drop_records_from(tmp_path, 5) == 2  # step 6 and the broken line
    assert (tmp_path / "metrics.jsonl").read_text() == "".join(json.dumps(line) + "\n" for line in lines[:3])
    assert os.stat(tmp_path / "metrics.jsonl").st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]  # no temporary file left
    assert drop_records_from(tmp_path, 5) == 0
    assert drop_records_from(tmp_path / "absent", 1) == 0


def test_a_fresh_start_rewrites_what_an_earlier_attempt_logged(tmp_path):
    """A run that crashed before its first checkpoint starts again from step 0: its old
    records (step 0 included, which the new run writes again) go."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "num_params": 5}\n{"step": 1, "loss": 2.0}\n')
    logger = RunLogger(tmp_path, num_steps=3, initial_step=0, progress=False)
    logger.write(0, {"num_params": 5.0})
    logger.close()
    assert rows(tmp_path) == [{"step": 0, "num_params": 5.0}]
