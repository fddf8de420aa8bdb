"""The documentation site builds with no warning, and its API pages list the public names."""

import os
import pathlib
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# mkdocs in this interpreter, with TensorFlow made unimportable: the API reference is read
# from the sources (griffe), so building it must not need the data pipelines' dependency.
_BUILD = "import sys; sys.modules['tensorflow'] = None; from mkdocs.__main__ import cli; cli()"


def _public_names(package: str) -> set[str]:
    """The names `src/scenic_eqx/<package>/__init__.py` re-exports (`import X as X`)."""
    text = pathlib.Path(os.path.join(ROOT, "src", "scenic_eqx", package, "__init__.py")).read_text()
    return {a for a, b in re.findall(r"\b(\w+) as (\w+)\b", text) if a == b}


def test_mkdocs_build_is_strict_clean(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-c", _BUILD, "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-5000:]
    assert "WARNING" not in result.stderr, result.stderr[-5000:]
    for page in (
        "design",
        "projects",
        "performance",
        "scaling",
        "fault_tolerance",
        "bring_your_own_data",
        "co_training",
    ):
        assert (site / page / "index.html").is_file(), page
    for package in ("nn", "tasks", "loops", "data"):
        html = (site / "api" / package / "index.html").read_text()
        documented = set(re.findall(rf'id="scenic_eqx\.{package}\.(\w+)"', html))
        # Every re-exported class and function is documented (constants need a docstring).
        callables = {n for n in _public_names(package) if not n.isupper()}
        assert callables <= documented, sorted(callables - documented)
    runner = set(
        re.findall(r'id="scenic_eqx\.run\.(\w+)"', (site / "api" / "run" / "index.html").read_text())
    )
    assert {"load_config", "build_dataset", "build_model", "build_task", "build_optimizer", "train"} <= runner
