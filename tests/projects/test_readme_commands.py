"""The commands of the READMEs and the configs' docstrings, as a user would copy them.

Training them all would take days; each `scenic-eqx` command is instead parsed by the
command's own parser and its config loaded with the command's overrides, so a renamed
file, config argument or key, or a model, task or dataset that is not registered under
the name the config gives, fails here. The smoke commands also train, verbatim but for
their length and workdir, in `test_every_project.py`. A script's command names a file
that exists, and options the script defines.
"""

import os
import re

import pytest
from readme_commands import ROOT, config_spec, readme_commands

from scenic_eqx import cli, data, nn, run, tasks

COMMANDS = readme_commands()
CLI = [(source, argv) for source, argv in COMMANDS if argv[0] == "scenic-eqx"]
SCRIPTS = [(source, argv) for source, argv in COMMANDS if argv[0] != "scenic-eqx"]


def _id(command: tuple[str, list[str]]) -> str:
    source, argv = command
    return f"{source}: {' '.join(argv[1:4])}"


def test_the_readmes_have_commands():
    assert len(CLI) >= 40 and len(SCRIPTS) >= 5, COMMANDS


@pytest.mark.parametrize("command", CLI, ids=map(_id, CLI))
def test_command_parses_and_its_config_loads(command, monkeypatch):
    _, argv = command
    monkeypatch.chdir(ROOT)
    rest, overrides = cli._split_overrides(argv[1:])
    args = cli._parser().parse_args(rest)
    if args.command != "train":
        return  # `eval` reads the config a run saved
    config = cli._load_config(args, overrides)  # registers what the config's files register
    assert config.model_name in nn.list_models(), config.model_name
    # A co-training config names a dataset and a task per co-trained dataset.
    for entry in config.co_training.values() if config.co_training else [config]:
        assert entry.task_name in tasks.list_tasks(), entry.task_name
        assert entry.dataset_name in data.list_datasets(), entry.dataset_name
    assert callable(run.get_trainer(config))


@pytest.mark.parametrize("command", SCRIPTS, ids=map(_id, SCRIPTS))
def test_script_exists_with_the_options_used(command):
    _, argv = command
    script = os.path.join(ROOT, argv[1])
    assert os.path.isfile(script), argv[1]
    with open(script) as f:
        source = f.read()
    for option in (arg for arg in argv[2:] if arg.startswith("--")):
        assert re.search(rf"[\"']{re.escape(option)}[\"']", source), f"{argv[1]} defines no {option}"
    spec = config_spec(argv)
    if spec:
        assert os.path.isfile(os.path.join(ROOT, spec.split(":")[0])), spec
