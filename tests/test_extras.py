"""Optional dependencies: a missing one raises, or is switched off, naming its extra.

A package is made missing by putting `None` in `sys.modules` under its name, which makes
its import raise `ModuleNotFoundError` as if it were not installed.
"""

import json
import logging
import sys

import numpy as np
import pytest

from scenic_eqx import _extras, data, loops, nn, tasks


@pytest.fixture(autouse=True)
def _fresh_notices(monkeypatch):
    """Each test sees `optional`'s one-time notices afresh."""
    monkeypatch.setattr(_extras, "_REPORTED", set())


def test_require_returns_the_module():
    assert _extras.require("json", "cli", "A feature") is json


def test_require_names_the_feature_module_and_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(
        ImportError,
        match=r"^A feature needs safetensors, which is not installed: "
        r"pip install 'scenic-eqx\[weights\]'$",
    ) as caught:
        _extras.require("safetensors", "weights", "A feature")
    assert caught.value.name == "safetensors"


def test_require_of_a_submodule_names_the_missing_package(monkeypatch):
    # Both: an earlier test may have imported `sklearn.datasets`, which would then be found.
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"needs sklearn\.datasets, which is not installed.*\[data\]"):
        _extras.require("sklearn.datasets", "data", "A feature")


def test_a_missing_dependency_of_an_installed_module_is_not_reworded(tmp_path, monkeypatch):
    """An installed module that fails to import its own dependency keeps Python's error."""
    (tmp_path / "scenic_eqx_test_broken.py").write_text("import scenic_eqx_test_absent\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="scenic_eqx_test_absent") as caught:
        _extras.require("scenic_eqx_test_broken", "data", "A feature")
    assert "pip install" not in str(caught.value)
    monkeypatch.delitem(sys.modules, "scenic_eqx_test_broken", raising=False)


def test_optional_says_once_what_is_off(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with caplog.at_level(logging.WARNING, logger="scenic_eqx"):
        assert _extras.optional("tensorboardX", "logging", "Events are off") is None
        assert _extras.optional("tensorboardX", "logging", "Events are off") is None
    assert [r.getMessage() for r in caplog.records] == [
        "Events are off: tensorboardX is not installed (pip install 'scenic-eqx[logging]')."
    ]


def test_fit_runs_without_tensorboardx(tmp_path, monkeypatch, caplog, getkey):
    """`loops.fit` with a workdir writes metrics.jsonl and logs that TensorBoard is off."""
    import jax
    import optax

    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    images = np.random.default_rng(0).normal(size=(16, 4, 4, 1)).astype(np.float32)
    labels = np.arange(16) % 2
    dataset = data.from_arrays((images, labels), (images, labels), batch_size=8)
    model = nn.FullyConnected(num_classes=2, input_shape=(4, 4, 1), hidden_sizes=(8,), key=getkey())
    with caplog.at_level(logging.WARNING, logger="scenic_eqx"):
        _, history = loops.fit(
            model, tasks.ClassificationTask(), dataset.train_iter, optimizer=optax.sgd(0.1),
            num_steps=2, key=jax.random.key(0), log_every=1, workdir=tmp_path, progress=False,
        )  # fmt: skip
    assert [r["step"] for r in history if "loss" in r] == [1, 2]
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") >= 2
    assert not list(tmp_path.glob("events.out.tfevents.*"))
    notices = [r.getMessage() for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert notices == [
        "TensorBoard events are off: tensorboardX is not installed (pip install 'scenic-eqx[logging]')."
    ]


@pytest.mark.parametrize("module", ["tensorflow", "tensorflow_datasets"])
def test_get_dataset_names_the_data_extra(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"get_dataset\('digits'\) needs {module}, .*\[data\]"):
        data.get_dataset("digits", batch_size=8, process_index=0, process_count=1)


def test_numpy_datasets_need_no_tensorflow(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    dataset = data.get_dataset("synthetic_segmentation", batch_size=2, process_index=0, process_count=1)
    assert next(iter(dataset.train_iter))["inputs"].shape[0] == 2


def test_plot_metrics_names_the_logging_extra(tmp_path, monkeypatch):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"plot_metrics needs matplotlib, .*\[logging\]"):
        loops.plot_metrics(tmp_path / "metrics.jsonl", tmp_path / "curves.png")


def test_coco_evaluator_names_the_coco_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(ImportError, match=r"needs pycocotools, .*\[coco\]"):
        tasks.CocoEvaluator()


def test_load_weights_names_the_weights_extra(tmp_path, monkeypatch, getkey):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    model = nn.ViT(num_classes=2, patch_size=4, hidden_size=8, num_layers=1, num_heads=2,
                   mlp_dim=8, image_size=8, key=getkey())  # fmt: skip
    with pytest.raises(ImportError, match=r"needs safetensors, .*\[weights\]"):
        nn.load_weights(model, str(path))


def test_hungarian_matcher_names_the_matching_extra_while_tracing(monkeypatch):
    import jax.numpy as jnp

    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(ImportError, match=r'The "hungarian" matcher needs scipy, .*\[matching\]'):
        tasks.hungarian_matcher(jnp.zeros((1, 2, 2)))


def test_write_video_records_names_the_data_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r"write_video_records needs tensorflow, .*\[data\]"):
        data.write_video_records(tmp_path / "v.tfrecord", [np.zeros((1, 2, 2, 3), np.uint8)], [0])


def test_data_ops_names_the_data_extra(monkeypatch):
    import importlib

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.delitem(sys.modules, "scenic_eqx.data.ops", raising=False)
    with pytest.raises(ImportError, match=r"scenic_eqx\.data\.ops needs tensorflow, .*\[data\]"):
        importlib.import_module("scenic_eqx.data.ops")


def test_the_command_names_the_cli_extra(tmp_path, monkeypatch, capsys):
    from scenic_eqx import cli

    monkeypatch.setitem(sys.modules, "ml_collections", None)
    code = cli.main(["train", "--config", str(tmp_path / "config.py"), "--workdir", str(tmp_path)])
    assert code == 1
    assert capsys.readouterr().err.strip() == (
        "scenic-eqx: error: The scenic-eqx command needs ml_collections, which is not installed: "
        "pip install 'scenic-eqx[cli]'"
    )


def test_run_names_the_cli_extra(monkeypatch):
    import importlib

    monkeypatch.setitem(sys.modules, "ml_collections", None)
    monkeypatch.delitem(sys.modules, "scenic_eqx.run", raising=False)
    with pytest.raises(ImportError, match=r"scenic_eqx\.run needs ml_collections, .*\[cli\]"):
        importlib.import_module("scenic_eqx.run")
