"""Shape checks are on by default, outside pytest too; `SCENIC_EQX_SHAPE_CHECKS=0` turns them off.

The checks under test are those a user's script gets: a tiny ViT is called in a fresh
process (no pytest, no plugin) with a wrong rank, a wrong axis size and a wrong dtype,
once with the default environment and once with the checks switched off.
"""

import json
import os
import subprocess
import sys

import pytest

from scenic_eqx import _shape_checks

_SCRIPT = """
import json

import scenic_eqx.nn as nn  # the subpackage alone: the package's __init__ runs first

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxtyping
import scenic_eqx
from scenic_eqx import tasks

model = nn.ViT(num_classes=3, patch_size=4, hidden_size=16, num_layers=1, num_heads=2,
               mlp_dim=32, image_size=16, key=jax.random.key(0))
calls = {
    "right": (model, jnp.ones((16, 16, 3))),
    "rank": (model, jnp.ones((2, 16, 16, 3))),
    "channels": (model, jnp.ones((16, 16, 1))),
    "image_size": (model, jnp.ones((8, 16, 3))),
    "dtype": (model, jnp.ones((16, 16, 3), jnp.int32)),
    "box_iou_last_axis": (lambda b: tasks.box_iou(b, jnp.zeros((3, 4))), jnp.zeros((3, 5))),
}
results = {"installed": scenic_eqx._shape_checks.installed()}
for name, (fn, x) in calls.items():
    try:
        results[name] = [None, str(fn(x)[0].shape if name.startswith("box") else fn(x).shape)]
    except Exception as error:
        results[name] = [type(error).__name__, str(error)]

# Every isinstance check of a jaxtyping annotation goes through its metaclass: count them.
metaclass = type(jaxtyping.Float[jax.Array, "axis"])
original = metaclass.__instancecheck__
checks, traces = [0], [0]
def counted(cls, obj):
    checks[0] += 1
    return original(cls, obj)
metaclass.__instancecheck__ = counted

@eqx.filter_jit
def forward(model, x):
    traces[0] += 1
    return model(x)

x = jnp.ones((16, 16, 3))
forward(model, x)
first = checks[0]
forward(model, x + 1.0)
results["jit"] = {"traces": traces[0], "first_call_checks": first,
                  "second_call_checks": checks[0] - first}
print("RESULTS" + json.dumps(results))
"""


def _start(**environment) -> subprocess.Popen:
    """`_SCRIPT` in a fresh process, with `environment` added to the test's (less pytest's)."""
    switches = ("JAXTYPING_DISABLE", _shape_checks.ENVIRONMENT_VARIABLE)
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith("PYTEST") and key not in switches
    }  # fmt: skip
    env.update(JAX_PLATFORMS="cpu", **environment)
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip


def _results(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.split("RESULTS")[-1])


@pytest.fixture(scope="module")
def runs():
    """Both processes, run side by side: the default one and one with the checks off."""
    processes = {
        "checked": _start(),
        "unchecked": _start(**{_shape_checks.ENVIRONMENT_VARIABLE: "0"}),
    }
    return {name: _results(process) for name, process in processes.items()}


@pytest.fixture
def checked(runs):
    return runs["checked"]


@pytest.fixture
def unchecked(runs):
    return runs["unchecked"]


def test_the_suite_runs_with_the_checks_users_get():
    assert _shape_checks.installed()


def test_a_right_input_passes(checked, unchecked):
    assert checked["installed"] and not unchecked["installed"]
    assert checked["right"] == unchecked["right"] == [None, "(3,)"]


def test_a_wrong_rank_names_the_argument_and_its_axes(checked):
    error, message = checked["rank"]
    assert error == "TypeCheckError"
    assert "ViT.__call__" in message
    assert "parameter 'x'" in message
    assert "Float[jaxlib._jax.Array, 'height width channels']" in message
    assert "Actual value: f32[2,16,16,3]" in message


def test_a_wrong_dtype_names_the_argument_and_its_axes(checked):
    error, message = checked["dtype"]
    assert error == "TypeCheckError"
    assert "parameter 'x'" in message
    assert "Float[jaxlib._jax.Array, 'height width channels']" in message
    assert "Actual value: i32[16,16,3]" in message


def test_a_task_function_is_checked_too(checked, unchecked):
    error, message = checked["box_iou_last_axis"]
    assert error == "TypeCheckError"
    assert "parameter 'boxes1'" in message and "'*batch n 4'" in message
    assert unchecked["box_iou_last_axis"][0] != "TypeCheckError"


@pytest.mark.parametrize(
    "case, match",
    [
        ("channels", "`x` (the input of ViT) must have size 3 on its `channels` axis (axis 2 of "
                     "(height, width, channels)), from `in_channels` (=3). Received: shape (16, 16, 1)."),
        ("image_size", "`x` (the input of ViT) must have size 16 on its `height` axis (axis 0 of "
                       "(height, width, channels)), from `image_size` (=16x16). Received: shape (8, 16, 3)."),
    ],
)  # fmt: skip
def test_a_size_fixed_by_the_constructor_is_checked_by_the_model_either_way(checked, unchecked, case, match):
    # The annotation says only "height width channels"; the model's own input check ties
    # the sizes to its constructor arguments, with or without the annotation checks.
    assert checked[case] == unchecked[case] == ["ValueError", match]


def test_switched_off_the_annotations_are_not_checked(unchecked):
    error, message = unchecked["rank"]
    assert error == "ValueError"  # the model's own check, not jaxtyping's
    hint = "It takes one example: batch it with `jax.vmap`. Received: shape (2, 16, 16, 3)."
    assert hint in message
    error, message = unchecked["dtype"]
    assert error == "TypeError"
    assert "must be a floating-point array" in message and "Received: dtype int32." in message


def test_a_jitted_call_checks_once_while_tracing(checked):
    assert checked["jit"]["traces"] == 1
    assert checked["jit"]["first_call_checks"] > 0
    assert checked["jit"]["second_call_checks"] == 0


@pytest.mark.parametrize("value, expected", [("1", True), ("0", False), ("true", True), ("False", False)])
def test_the_environment_variable(monkeypatch, value, expected):
    monkeypatch.setenv(_shape_checks.ENVIRONMENT_VARIABLE, value)
    assert _shape_checks.requested() is expected


def test_an_unknown_value_of_the_environment_variable_is_refused(monkeypatch):
    monkeypatch.setenv(_shape_checks.ENVIRONMENT_VARIABLE, "off")
    match = r"`SCENIC_EQX_SHAPE_CHECKS` must be 1 .* or 0 .*Received: 'off'\."
    with pytest.raises(ValueError, match=match):
        _shape_checks.requested()


def test_installing_after_the_packages_are_imported_is_refused(monkeypatch):
    # Modules imported before the hook would silently stay unchecked.
    monkeypatch.setattr(_shape_checks, "_installed_hook", None)
    names = r"scenic_eqx.nn, scenic_eqx.tasks"
    with pytest.raises(RuntimeError, match=rf"before importing {names}: .*Received: {names} already"):
        _shape_checks.install()
