"""Package layering: `nn` imports neither `loops` nor `data`, and `data` imports no `loops`."""

import ast
import pathlib

import pytest

import scenic_eqx

_SOURCE = pathlib.Path(scenic_eqx.__file__).parent


def _imported_subpackages(source: str, package: str) -> set[str]:
    """The `scenic_eqx` subpackages that `source`, a module of `package`, imports.

    Relative imports are resolved against `package` (e.g. `"scenic_eqx.data"`), so
    `from ..loops import x` and `from .. import loops` both count as `loops`.
    """
    parent = package.split(".")
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = parent[: len(parent) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            names = [f"{target}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name.split(".")[1] for name in names if name.startswith("scenic_eqx."))
    return found


@pytest.mark.parametrize(("package", "forbidden"), [("data", {"loops"}), ("nn", {"loops", "data"})])
def test_lower_layers_import_no_higher_one(package, forbidden):
    modules = sorted((_SOURCE / package).rglob("*.py"))
    assert len(modules) > 5
    offenders = {}
    for path in modules:
        subpackage = ".".join(("scenic_eqx", *path.parent.relative_to(_SOURCE).parts))
        imported = _imported_subpackages(path.read_text(), subpackage) & forbidden
        if imported:
            offenders[str(path.relative_to(_SOURCE))] = sorted(imported)
    assert offenders == {}


@pytest.mark.parametrize(
    "statement",
    [
        "from ..loops._sharding import shard_batch",
        "from .. import loops",
        "from ...scenic_eqx.loops import fit",
        "import scenic_eqx.loops",
        "from scenic_eqx import loops",
        "from scenic_eqx.loops import fit",
        "def f():\n    from ..loops import fit",
    ],
)
def test_every_import_form_is_seen(statement):
    # The layering check would pass vacuously if an import form were missed.
    assert "loops" in _imported_subpackages(statement, "scenic_eqx.data")


def test_own_and_outside_imports_are_not_counted():
    source = "import numpy\nfrom . import _dataset\nfrom ._padding import pad_batch\nimport scenic_eqx"
    assert _imported_subpackages(source, "scenic_eqx.data") == {"data"}
