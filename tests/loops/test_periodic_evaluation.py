"""`fit(..., evaluations=[PeriodicEvaluation(...)])`: run when due, on the current
parameters and the run's mesh, recorded in the history and `metrics.jsonl`."""

import json

import equinox as eqx
import jax
import numpy as np
import optax
import pytest

from scenic_eqx import loops, tasks


def batches(num, size=16):
    rng = np.random.default_rng(0)
    for _ in range(num):
        x = rng.normal(size=(size, 4)).astype(np.float32)
        yield {"inputs": x, "label": (x[:, 0] > 0).astype(np.int32), "batch_mask": np.ones(size, np.float32)}


class Probe:
    """An evaluation that records what it was given and reports the model's bias."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, model_state, mesh):
        self.calls.append((model, model_state, mesh))
        return {"bias_sum": float(np.sum(np.asarray(model.bias))), "calls": len(self.calls)}


def test_evaluations_run_when_due_and_are_recorded(tmp_path):
    probe = Probe()
    mesh = loops.data_mesh()
    state, history = loops.fit(
        eqx.nn.Linear(4, 2, key=jax.random.key(0)), tasks.ClassificationTask(), batches(6),
        optimizer=optax.sgd(0.1), num_steps=6, key=jax.random.key(1), log_every=3, progress=False,
        workdir=tmp_path, mesh=mesh, evaluations=[loops.PeriodicEvaluation("probe", 2, probe)],
    )  # fmt: skip
    recorded = {record["step"]: record for record in history}
    assert sorted(recorded) == [2, 3, 4, 6]  # logged at 3 and 6, evaluated at 2, 4 and 6
    assert [recorded[s].get("probe_calls") for s in (2, 3, 4, 6)] == [1.0, None, 2.0, 3.0]
    # The last call saw the final parameters, on the run's mesh.
    model, model_state, given_mesh = probe.calls[-1]
    assert recorded[6]["probe_bias_sum"] == pytest.approx(float(np.sum(np.asarray(state.model.bias))))
    assert model_state is None and given_mesh is mesh
    assert model.weight.sharding.device_set == set(mesh.devices.flat)
    with open(tmp_path / "metrics.jsonl") as f:
        lines = [json.loads(line) for line in f]
    assert [line["probe_calls"] for line in lines if "probe_calls" in line] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: loops.PeriodicEvaluation("zero shot", 10, Probe()),
            r"letters, digits and underscores.*'zero shot'",
        ),
        (
            lambda: loops.PeriodicEvaluation("probe", 0, Probe()),
            r"`every` of .* 'probe' must be a positive.*: 0",
        ),
        (
            lambda: loops.PeriodicEvaluation("probe", 10, "probe"),
            r"`evaluate` of .* must be a function.*: str",
        ),
    ],
)
def test_bad_evaluations_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("evaluations", "kwargs", "match"),
    [
        (["probe"], {}, r"`evaluations\[0\]` must be a `loops.PeriodicEvaluation`. Received: str"),
        ([("a", 2), ("a", 4)], {}, r"its own name, other than 'eval'.*Received: 'a' twice"),
        ([("eval", 2)], {}, r"its own name, other than 'eval'"),
        ([("a", 3)], {"steps_per_dispatch": 2}, r"multiple of `steps_per_dispatch` \(=2\).*every=3"),
    ],
)
def test_fit_refuses_evaluations_it_cannot_run(evaluations, kwargs, match):
    evaluations = [e if isinstance(e, str) else loops.PeriodicEvaluation(*e, Probe()) for e in evaluations]
    with pytest.raises(ValueError, match=match):
        loops.fit(
            eqx.nn.Linear(4, 2, key=jax.random.key(0)), tasks.ClassificationTask(), batches(1),
            optimizer=optax.sgd(0.1), num_steps=1, key=jax.random.key(1), log_every=2 if kwargs else 1,
            evaluations=evaluations, **kwargs,
        )  # fmt: skip


def test_an_evaluation_must_return_a_dict_of_numbers():
    evaluation = loops.PeriodicEvaluation("probe", None, lambda model, state, mesh: {"value": "high"})
    with pytest.raises(ValueError, match=r"must return scalar values. Received: \{'value': 'str'\}"):
        evaluation.run(None, None, None)
    evaluation = loops.PeriodicEvaluation("probe", None, lambda model, state, mesh: [0.5])
    with pytest.raises(ValueError, match=r"must return a dict `\{metric name: value\}`. Received: list"):
        evaluation.run(None, None, None)
