"""The Python code a config names: config files by path, functions as `FILE.py:NAME` or `module:NAME`.

A file is imported once per process, as a module is: importing it again returns the
same module, so what its top-level code registers (`nn.register`, ...) is registered
once. A file changed on disk since is executed again.
"""

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from types import ModuleType

_MODULE_PREFIX = "_scenic_eqx_file_"


def import_file(path: str) -> ModuleType:
    """The module of the Python file `path`, executed on the first import only.

    A config file registers a project's own models, tasks and datasets this way:
    `run.import_file(os.path.join(os.path.dirname(__file__), "..", "model.py"))`.

    Arguments:
        path: an existing Python file (relative paths start at the current directory).

    Returns:
        The module, held in `sys.modules` under a name derived from the file's real path.

    Raises:
        FileNotFoundError: `path` is not a file.
    """
    real_path = os.path.realpath(path)
    if not os.path.isfile(real_path):
        raise FileNotFoundError(
            f"`path` must be an existing Python file (relative paths start at the current "
            f"directory, {os.getcwd()}). Received: {path!r}."
        )
    name = _MODULE_PREFIX + hashlib.sha1(real_path.encode()).hexdigest()[:16]
    stat = os.stat(real_path)
    version = (stat.st_mtime_ns, stat.st_size)
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__scenic_eqx_version__", None) == version:
        return module
    spec = importlib.util.spec_from_file_location(name, real_path)
    module = importlib.util.module_from_spec(spec)
    module.__scenic_eqx_version__ = version
    # In `sys.modules` while it runs, as for an import: dataclasses and pickling look
    # up the module of the classes it defines.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _usage(argument: str) -> str:
    return (
        f"`{argument}` must name a function as `FILE.py:NAME` (e.g. 'projects/foo/train.py:train') "
        "or `module:NAME` (e.g. 'my_project.train:train')"
    )


def _import_module(argument: str, reference: str, module_name: str) -> ModuleType:
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise ValueError(f"{_usage(argument)}. Received: {reference!r}.")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        # Only a missing module named by the reference is a config error; a module
        # missing inside the user's code is that code's error, raised as it is.
        if error.name is None or not (module_name + ".").startswith(error.name + "."):
            raise
        raise ValueError(
            f"`{argument}` names the module {module_name!r}, which cannot be imported "
            f"({error}; the current directory, {os.getcwd()}, is searched too when run by "
            f"the `scenic-eqx` command). Received: {reference!r}."
        ) from None


def load_function(reference: str, *, argument: str) -> Callable:
    """The function `reference` names: `FILE.py:NAME` (a file, imported once) or `module:NAME`.

    Arguments:
        reference: e.g. `"projects/foo/train.py:train"` or `"my_project.train:train"`.
        argument: how the error messages name the reference (e.g. `"config.trainer"`).

    Raises:
        ValueError, FileNotFoundError: a malformed reference, a missing file or module,
            or a name the module does not define as a callable.
    """
    source, _, name = reference.rpartition(":") if isinstance(reference, str) else ("", "", "")
    if not source or not name.isidentifier():
        raise ValueError(f"{_usage(argument)}. Received: {reference!r}.")
    if source.endswith(".py"):
        if not os.path.isfile(source):
            raise FileNotFoundError(
                f"`{argument}` names the file {source!r}, which does not exist (relative paths "
                f"start at the current directory, {os.getcwd()}). Received: {reference!r}."
            )
        module = import_file(source)
    else:
        module = _import_module(argument, reference, source)
    if not hasattr(module, name):
        defined = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        close = difflib.get_close_matches(name, defined, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"`{argument}`: {source!r} defines no {name!r}.{hint} Received: {reference!r}.")
    function = getattr(module, name)
    if not callable(function):
        raise ValueError(
            f"`{argument}`: {name!r} in {source!r} must be a function. Received: {reference!r}, "
            f"a {type(function).__name__}."
        )
    return function
