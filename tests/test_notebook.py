"""docs/prototyping.ipynb runs top to bottom in a fresh kernel of this interpreter."""

import os
import re

import nbclient
import nbformat
import pytest

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "docs", "prototyping.ipynb")


def _stdout(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def _code_cell(notebook, starts_with: str):
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith(starts_with)]
    return cell


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.fixture(scope="module")
def executed():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel runs as a user's would: one CPU device, not the suite's eight fake ones.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.pop("XLA_FLAGS", "")).strip()
    if flags:  # XLA reads a value that does not start with "--" as a file name
        env["XLA_FLAGS"] = flags
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}},
    )
    client.execute(env=env)  # raises CellExecutionError if any cell fails
    return notebook


def test_model_gives_logits_of_one_example(executed):
    assert "logits of one example: (10,)" in _stdout(_code_cell(executed, "class TinyViT"))


def test_wrong_shape_prints_the_expected_axes(executed):
    printed = _stdout(_code_cell(executed, "batch_of_images"))
    assert "Error" in printed, printed
    # The message names the annotated axes of one example, and the batch received.
    assert re.search(r"height,? width,? channels", printed), printed
    assert re.search(r"4, ?8, ?8, ?1", printed), printed


def test_training_beats_chance_and_the_loss_is_plotted(executed):
    printed = _stdout(_code_cell(executed, "digits = load_digits()"))
    accuracy = float(re.search(r"held-out accuracy: ([0-9.]+)", printed).group(1))
    assert accuracy > 0.5, printed  # 10 classes: chance is 0.1
    plot = _code_cell(executed, "records = ")
    assert any("image/png" in o.get("data", {}) for o in plot.outputs), plot.outputs
