"""The shell commands of the README files and the config files' docstrings: every line of
a fenced or indented code block that starts with `scenic-eqx` or runs a Python file,
continuation lines joined."""

import ast
import glob
import os
import re
import shlex

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
READMES = sorted(glob.glob(os.path.join(ROOT, "projects", "*", "README.md"))) + [
    os.path.join(ROOT, "README.md")
]
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "projects", "*", "configs", "*.py")))
_PYTHON = re.compile(r"^(\S+/)?python3?$")


def _code_lines(text: str):
    """The lines of `text`'s code blocks (fenced, or indented by four spaces)."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            yield line.strip()


def readme_commands() -> list[tuple[str, list[str]]]:
    """`(file relative to the root, argv)` for every command, `#` comments dropped."""
    commands = []
    for path in READMES + CONFIGS:
        with open(path) as f:
            text = f.read()
        if path.endswith(".py"):
            text = ast.get_docstring(ast.parse(text), clean=False) or ""
        lines = list(_code_lines(text))
        joined = []
        for line in lines:
            if joined and joined[-1].endswith("\\"):
                joined[-1] = joined[-1][:-1] + " " + line
            else:
                joined.append(line)
        for line in joined:
            program = line.split(maxsplit=1)[0] if line else ""
            if program == "scenic-eqx" or _PYTHON.match(program):
                commands.append((os.path.relpath(path, ROOT), shlex.split(line, comments=True)))
    return commands


def config_spec(argv: list[str]) -> str | None:
    """The `--config` value of a `scenic-eqx` or script command, if it has one."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "--config":
            return argv[i + 1]
    return None
