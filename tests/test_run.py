"""`scenic_eqx.run` and the CLI around it: a project's own model, task, dataset, optimizer
and training function, found through the registries and its config file."""

import json
import pathlib
import re
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import pytest

from scenic_eqx import _config, cli, run
from scenic_eqx.data import _registry as data_registry
from scenic_eqx.nn import _registry as nn_registry
from scenic_eqx.tasks import _registry as tasks_registry

# A project's module: what it registers is found by name in its config.
PROJECT_PARTS = '''
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scenic_eqx import data, nn, tasks


@nn.register("tiny_mlp", hidden_size=16)
class TinyMlp(eqx.Module):
    hidden: eqx.nn.Linear
    out: eqx.nn.Linear

    def __init__(self, num_classes, *, hidden_size, in_features=4, key):
        k_hidden, k_out = jax.random.split(key)
        self.hidden = eqx.nn.Linear(in_features, hidden_size, key=k_hidden)
        self.out = eqx.nn.Linear(hidden_size, num_classes, key=k_out)

    def __call__(self, x, *, key=None):
        return self.out(jax.nn.relu(self.hidden(x.reshape(-1))))


@tasks.register("hit_rate_classification")
class HitRateTask(tasks.AbstractTask):
    def loss(self, outputs, batch):
        mask = batch["batch_mask"]
        log_p = jax.nn.log_softmax(outputs)
        nll = -jnp.take_along_axis(log_p, batch["label"][:, None], axis=-1)[:, 0]
        return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    def metrics(self, outputs, batch):
        mask = batch["batch_mask"]
        hits = (jnp.argmax(outputs, axis=-1) == batch["label"]).astype(jnp.float32)
        return {"hit_rate": (jnp.sum(hits * mask), jnp.sum(mask))}


@data.register("sign_of_a_pixel")
def sign_of_a_pixel(*, batch_size, eval_batch_size, shuffle_seed, process_index, process_count,
                    num_examples=96):
    """2x2x1 images of noise; the label says whether the top-left pixel is positive."""
    images = np.random.default_rng(0).normal(size=(num_examples, 2, 2, 1)).astype(np.float32)
    labels = (images[:, 0, 0, 0] > 0).astype(np.int32)
    split = num_examples * 2 // 3
    return data.from_arrays(
        (images[:split], labels[:split]), (images[split:], labels[split:]),
        batch_size=batch_size, eval_batch_size=eval_batch_size, shuffle_seed=shuffle_seed,
        process_index=process_index, process_count=process_count,
    )
'''

# Its config file: importing the project's module registers its parts; `get_optimizer`
# replaces `optimizer` (the adamw named here is not used).
PROJECT_CONFIG = """
import ml_collections
import optax

import tiny_project_parts  # registers tiny_mlp, hit_rate_classification, sign_of_a_pixel


def get_config():
    config = ml_collections.ConfigDict()
    config.dataset_name = "sign_of_a_pixel"
    config.dataset = ml_collections.ConfigDict({"num_examples": 96})
    config.batch_size = 16
    config.eval_batch_size = 16
    config.model_name = "tiny_mlp"
    config.model = ml_collections.ConfigDict({"hidden_size": 8})
    config.task_name = "hit_rate_classification"
    config.task = ml_collections.ConfigDict()
    config.optimizer = "adamw"
    config.optimizer_kwargs = ml_collections.ConfigDict()
    config.schedule = "constant"
    config.schedule_kwargs = ml_collections.ConfigDict({"base_learning_rate": 0.5})
    config.grad_clip_norm = None
    config.num_train_steps = 40
    config.log_every = 20
    config.eval_every = 40
    config.checkpoint_every = 40
    config.seed = 0
    return config


def get_optimizer(config, schedule):
    return optax.sgd(schedule, momentum=0.5)
"""


def _library_registries():
    models = dict(nn_registry._FAMILIES), dict(nn_registry._ALIASES)
    return models, dict(tasks_registry._TASKS), dict(data_registry._DATASETS)


def _use_registries(monkeypatch, registries) -> None:
    (families, aliases), task_types, datasets = registries
    monkeypatch.setattr(nn_registry, "_FAMILIES", dict(families))
    monkeypatch.setattr(nn_registry, "_ALIASES", dict(aliases))
    monkeypatch.setattr(tasks_registry, "_TASKS", dict(task_types))
    monkeypatch.setattr(data_registry, "_DATASETS", dict(datasets))


def _forget_imported_project(monkeypatch, project) -> None:
    """As in a new process: the project's module and config file not imported yet."""
    for name, module in list(sys.modules.items()):
        if name == "tiny_project_parts" or getattr(module, "__file__", None) == str(project / "config.py"):
            monkeypatch.delitem(sys.modules, name)


def _printed_metrics(capsys) -> dict:
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("test ")
    return json.loads(line[len("test ") :])


@pytest.fixture(scope="module")
def library_registries():
    return _library_registries()


@pytest.fixture(scope="module")
def project(tmp_path_factory, library_registries):
    """A project directory (its parts and config file), the current directory while in use;
    what it registers is dropped from the registries afterwards."""
    directory = tmp_path_factory.mktemp("project")
    (directory / "tiny_project_parts.py").write_text(PROJECT_PARTS)
    (directory / "config.py").write_text(PROJECT_CONFIG)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _use_registries(monkeypatch, library_registries)
        monkeypatch.setattr(sys, "path", [str(directory), *sys.path])  # as the CLI does for its cwd
        monkeypatch.chdir(directory)
        yield directory
        monkeypatch.delitem(sys.modules, "tiny_project_parts", raising=False)


@pytest.fixture(scope="module")
def trained(project, tmp_path_factory):
    """The project trained by `scenic-eqx train`: its workdir."""
    workdir = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--config", "config.py", "--workdir", str(workdir)]) == 0
    return workdir


def test_a_project_s_own_parts_train_through_the_cli(trained, project):
    results = json.loads(pathlib.Path(trained / "test_metrics.json").read_text())
    assert results["hit_rate"] >= 0.9  # chance is about 0.5
    saved = json.loads(pathlib.Path(trained / "config.json").read_text())
    assert saved["config_file"] == str(project / "config.py")
    assert saved["optimizer"] == f"{project / 'config.py'}:get_optimizer"
    assert saved["dataset"] == {"num_examples": 96} and saved["trainer"] is None


def test_eval_without_config_reads_the_saved_one(trained, project, library_registries, monkeypatch, capsys):
    expected = json.loads(pathlib.Path(trained / "test_metrics.json").read_text())["hit_rate"]
    # Nothing of the project known yet: the saved `config_file` brings its parts back.
    _use_registries(monkeypatch, library_registries)
    _forget_imported_project(monkeypatch, project)
    monkeypatch.chdir(project.parent)
    assert cli.main(["eval", "--workdir", str(trained)]) == 0
    assert _printed_metrics(capsys)["hit_rate"] == pytest.approx(expected, abs=1e-5)
    assert "tiny_mlp" in nn_registry._ALIASES
    # Overrides apply on top; metrics are exact whatever the eval batch size (padding).
    assert cli.main(["eval", "--workdir", str(trained), "--config.eval_batch_size=40"]) == 0
    assert _printed_metrics(capsys)["hit_rate"] == pytest.approx(expected, abs=1e-5)


def test_eval_without_a_saved_config_is_a_config_error(tmp_path, capsys):
    assert cli.main(["eval", "--workdir", str(tmp_path)]) == 2
    assert f"`workdir` (={str(tmp_path)!r}) holds no `config.json`" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # train has no saved config to fall back on
        cli.main(["train", "--workdir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--config" in capsys.readouterr().err


def test_saved_config_whose_file_is_gone(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"config_file": str(tmp_path / "gone.py")}))
    assert cli.main(["eval", "--workdir", str(tmp_path)]) == 2
    assert "`config.config_file` in" in capsys.readouterr().err


def test_the_build_functions_of_a_project_config(project, getkey):
    config = run.load_config("config.py")
    dataset = run.build_dataset(config)
    assert dataset.meta_data["num_train_examples"] == 64 and dataset.meta_data["num_classes"] == 2
    batch = next(dataset.train_iter)
    assert batch["inputs"].shape == (16, 2, 2, 1)
    model = run.build_model(config, dataset.meta_data["num_classes"], key=getkey())
    assert type(model).__name__ == "TinyMlp" and model.hidden.out_features == 8  # config.model
    task = run.build_task(config)
    outputs = jax.vmap(model)(jnp.asarray(batch["inputs"]))
    assert outputs.shape == (16, 2) and jnp.isfinite(task.loss(outputs, batch))
    assert set(task.metrics(outputs, batch)) == {"hit_rate"}


OPTIMIZER_CONFIG = """
import ml_collections
import optax


def get_config():
    return ml_collections.ConfigDict(dict(
        optimizer="adamw", optimizer_kwargs={}, schedule="constant",
        schedule_kwargs={"base_learning_rate": 0.5}, grad_clip_norm=3.0, num_train_steps=10,
        learning_rate_multipliers={"b": 0.1}, frozen_parameters=("f",),
    ))


def get_optimizer(config, schedule):
    return optax.sgd(schedule)
"""


class ThreeParameters(eqx.Module):
    w: jax.Array
    b: jax.Array
    f: jax.Array


def _first_updates(config) -> dict:
    """The first update of parameters `w`, `b` and `f` (each zeros(2)) for gradients of 3.0."""
    params = ThreeParameters(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2))
    grads = jax.tree.map(lambda p: jnp.full_like(p, 3.0), params)
    optimizer, _ = run.build_optimizer(config)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    return {name: float(getattr(updates, name)[0]) for name in ("w", "b", "f")}


# optax mixes Python floats with its int32 step count, which strict promotion refuses.
@pytest.mark.standard_dtype_promotion
def test_get_optimizer_in_the_config_file(tmp_path):
    path = tmp_path / "optimizer_config.py"
    path.write_text(OPTIMIZER_CONFIG)
    config = run.load_config(str(path))
    assert config.optimizer == f"{path}:get_optimizer"
    json.loads(config.to_json())  # the config stays serializable
    # sgd at 0.5 on gradients clipped from a norm of 6 (w and b; f is frozen) to 3: 1.5
    # each; b's group calls `get_optimizer` with a tenth of the schedule.
    assert _first_updates(config) == pytest.approx({"w": -0.75, "b": -0.075, "f": 0.0})
    config.grad_clip_norm = None
    assert _first_updates(config) == pytest.approx({"w": -1.5, "b": -0.15, "f": 0.0})
    _config.apply_override(config, "optimizer=adamw")  # the command line may name one instead
    assert _first_updates(config) == pytest.approx({"w": -0.5, "b": -0.05, "f": 0.0}, rel=1e-4)


@pytest.mark.parametrize(
    "get_optimizer, error, match",
    [
        (
            "def get_optimizer(config, schedule):\n    return 0.1\n",
            ValueError,
            r"`config.optimizer` \(='.*c.py:get_optimizer'\) must return an optax `GradientTransformation`.* Received: a float",
        ),
        (
            "def get_optimizer(schedule):\n    pass\n",
            ValueError,
            r"`get_optimizer` in '.*c.py' must be a function of `\(config, schedule\)`.* Received: `get_optimizer\(schedule\)`",
        ),
    ],
)
def test_bad_get_optimizer(tmp_path, get_optimizer, error, match):
    path = tmp_path / "c.py"
    path.write_text(OPTIMIZER_CONFIG.split("def get_optimizer")[0] + get_optimizer)
    with pytest.raises(error, match=match):
        run.build_optimizer(run.load_config(str(path)))


@pytest.mark.filterwarnings(
    "ignore:Specifying a key will be required", "ignore:`optimistic_adam` is deprecated"
)
# optax mixes Python floats with its int32 step count, which strict promotion refuses.
@pytest.mark.standard_dtype_promotion
def test_optimizer_names_are_optimizers():
    names = run.list_optimizers()
    assert {"adamw", "sgd", "lamb", "lion", "nadamw", "adafactor"} <= set(names)
    not_optimizers = {"scale_by_learning_rate", "scale_by_rprop", "inject_hyperparams", "chain", "lbfgs"}
    assert not set(names) & not_optimizers
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    for name in names:  # each maps gradients to updates of the same shape (traced, not run)
        optimizer = getattr(optax, name)(learning_rate=0.1)
        updates = jax.eval_shape(lambda p: optimizer.update(p, optimizer.init(p), p)[0], params)
        assert updates["w"].shape == (3,) and updates["w"].dtype == jnp.float32, name


PROJECT_TRAINER = """
import os


def train(config, workdir):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "trained_by_the_project"), "w") as f:
        f.write(config.model_name)
    return {"project_metric": 0.25}


def takes_one(config):
    pass


not_a_function = 3
"""

TRAINER_CONFIG = """
import ml_collections


def get_config():
    return ml_collections.ConfigDict(dict(model_name="tiny_mlp", trainer="project_train.py:train"))
"""


@pytest.fixture
def trainer_project(tmp_path, monkeypatch):
    (tmp_path / "project_train.py").write_text(PROJECT_TRAINER)
    (tmp_path / "config.py").write_text(TRAINER_CONFIG)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "project_train", raising=False)
    yield tmp_path
    sys.modules.pop("project_train", None)


@pytest.mark.parametrize("overrides", [[], ["--config.trainer=project_train:train"]])  # a file; a module
def test_trainer_runs_instead_of_the_library_s(trainer_project, overrides, capsys):
    assert cli.main(["train", "--config", "config.py", "--workdir", "run", *overrides]) == 0
    assert _printed_metrics(capsys) == {"project_metric": 0.25}
    assert (trainer_project / "run" / "trained_by_the_project").read_text() == "tiny_mlp"
    assert not (trainer_project / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "trainer, match",
    [
        (
            "missing.py:train",
            r"`config.trainer` names the file 'missing.py', which does not exist \(relative paths start at the current directory",
        ),
        (
            "project_train.py:trian",
            r"`config.trainer`: 'project_train.py' defines no 'trian'. Did you mean 'train'\? Received: 'project_train.py:trian'.",
        ),
        (
            "project_train.py:not_a_function",
            r"'not_a_function' in 'project_train.py' must be a function. Received: .* a int",
        ),
        (
            "project_train.py:takes_one",
            r"`config.trainer` \(='project_train.py:takes_one'\) must be a function of `\(config, workdir\)`. Received: `takes_one\(config\)`",
        ),
        (
            "no_such_project.train:train",
            r"`config.trainer` names the module 'no_such_project.train', which cannot be imported \(No module named 'no_such_project'",
        ),
        (
            "train",
            r"`config.trainer` must name a function as `FILE.py:NAME` .* or `module:NAME` .* Received: 'train'.",
        ),
        (
            "projects/foo-bar:train",
            r"`config.trainer` must name a function .* Received: 'projects/foo-bar:train'.",
        ),
    ],
)
def test_bad_trainer_is_a_config_error(trainer_project, trainer, match, capsys):
    assert (
        cli.main(["train", "--config", "config.py", "--workdir", "run", f"--config.trainer={trainer}"]) == 2
    )
    error = capsys.readouterr().err
    assert error.startswith("scenic-eqx: error: ")
    assert re.search(match, error), error


@pytest.mark.parametrize(
    "meta_data, expected",
    [({"num_classes": 10, "label_shape": ()}, 10), ({"label_shape": (3,)}, 3)],
    ids=["classes", "regression"],
)
def test_num_outputs_sizes_the_head_for_classes_and_regression_targets(meta_data, expected):
    assert run.num_outputs(meta_data) == expected


@pytest.mark.parametrize("label_shape", [(), (4, 4), {"box": (4,)}], ids=["scalar", "dense", "dict"])
def test_num_outputs_refuses_targets_it_cannot_size(label_shape):
    with pytest.raises(ValueError, match=r"num_classes.*label_shape.*Received: .*label_shape="):
        run.num_outputs({"label_shape": label_shape})
