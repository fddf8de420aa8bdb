"""The `scenic-eqx` command: `scenic-eqx {train,eval,export} --config FILE --workdir DIR [--config.key=value ...]`.

`train` runs `scenic_eqx.run.train`, or the project's own function that `config.trainer`
names; `eval` reads the run's saved `DIR/config.json` unless `--config` is given, and so
does `export --output FILE` (`scenic_eqx.run.export`: the model as a `jax.export` file). The
current directory is importable (as with `python -m`), so a config file may import its
project's modules (`import projects.foo.model`), which register their models, tasks and
datasets.

Exit codes: 0 done; 1 ml_collections missing (`pip install 'scenic-eqx[cli]'`); 2 a bad
command line or config; 143 preempted (SIGTERM) after saving a checkpoint: the same
command resumes; 130 interrupted (Ctrl-C); 124 a process made no progress for
`config.step_timeout_seconds` (see docs/fault_tolerance.md).
"""

import argparse
import functools
import json
import os
import sys
from collections.abc import Mapping

from ._extras import require

# JAX's default heartbeat timeout is 100 s: a dead peer would hold the others that long.
HEARTBEAT_TIMEOUT_SECONDS = 30
SHUTDOWN_TIMEOUT_SECONDS = 300  # JAX's default


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenic-eqx",
        description="Train, evaluate or export a scenic_eqx config.",
        epilog="Override any config value with --config.KEY=VALUE (e.g. --config.num_train_steps=100).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in [
        ("train", "train (resuming from DIR's checkpoint), then evaluate on test"),
        ("eval", "evaluate DIR's latest checkpoint on test"),
        ("export", "export DIR's latest checkpoint's model with jax.export (see docs/exporting.md)"),
    ]:
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--config", required=name == "train",
            help="a config file, FILE or FILE:ARG" + ("" if name == "train" else " (default: DIR/config.json, "
                 "the config the run saved)"),
        )  # fmt: skip
        command.add_argument("--workdir", required=True, help="checkpoints and logs go here")
        if name == "export":
            command.add_argument("--output", required=True, help="the artifact (FILE.json describes it)")
            command.add_argument(
                "--platforms", type=lambda text: tuple(text.split(",")),
                help="where it may run, e.g. cpu,cuda (default: this machine's backend)",
            )  # fmt: skip
            continue  # one process: an export is not a multi-host job
        hosts = command.add_argument_group(
            "multi-host", "run one process per host, each with the same command and its own --process_id"
        )
        hosts.add_argument(
            "--distributed", action="store_true",
            help="call jax.distributed.initialize() first (cluster settings auto-detected "
                 "on Cloud TPU, SLURM and Open MPI; implied by the three options below)",
        )  # fmt: skip
        hosts.add_argument("--coordinator_address", help="HOST:PORT of process 0")
        hosts.add_argument("--num_processes", type=int, help="the number of processes (hosts)")
        hosts.add_argument("--process_id", type=int, help="this process's index, from 0")
        hosts.add_argument(
            "--heartbeat_timeout_seconds", type=int, default=HEARTBEAT_TIMEOUT_SECONDS,
            help="a process that sends no heartbeat for this long is taken to be dead, and every "
                 "process stops (default: %(default)s)",
        )  # fmt: skip
        hosts.add_argument(
            "--shutdown_timeout_seconds", type=int, default=SHUTDOWN_TIMEOUT_SECONDS,
            help="how long a finished process waits for the others to finish too (default: %(default)s)",
        )  # fmt: skip
    return parser


def _initialize_distributed(args: argparse.Namespace) -> None:
    """Joins this process to the `jax.distributed` cluster the arguments describe, if any."""
    explicit = {
        name: getattr(args, name)
        for name in ("coordinator_address", "num_processes", "process_id")
        if getattr(args, name) is not None
    }
    if args.distributed or explicit:
        import jax

        jax.distributed.initialize(
            **explicit, heartbeat_timeout_seconds=args.heartbeat_timeout_seconds,
            shutdown_timeout_seconds=args.shutdown_timeout_seconds,
        )  # fmt: skip


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separates `--config.key=value` (or `--config.key value`) from the other arguments."""
    rest, overrides = [], []
    args = iter(argv)
    for arg in args:
        if arg.startswith("--config."):
            assignment = arg[len("--config.") :]
            if "=" not in assignment:
                assignment += "=" + next(args, "")
            overrides.append(assignment)
        else:
            rest.append(arg)
    return rest, overrides


def _load_config(args: argparse.Namespace, overrides: list[str]):
    """The config of the command line: `--config`'s file, else the run's saved one, overridden."""
    from . import run

    config = run.load_config(args.config) if args.config else run.load_saved_config(args.workdir)
    for assignment in overrides:
        run.apply_override(config, assignment)
    return config


def _rounded(value):
    """A metric as a number rounded to 5 decimals (a 0-d array too); other values as they are."""
    try:
        return round(float(value), 5)
    except (TypeError, ValueError):
        return value


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    rest, overrides = _split_overrides(argv)
    args = _parser().parse_args(rest)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        require("ml_collections", "cli", "The scenic-eqx command")
    except ImportError as error:
        print(f"scenic-eqx: error: {error}", file=sys.stderr)
        return 1
    from . import loops, run

    try:
        config = _load_config(args, overrides)
        if args.command == "train":
            action = run.get_trainer(config)
        elif args.command == "eval":
            action = run.evaluate
        else:
            action = functools.partial(run.export, output=args.output, platforms=args.platforms)
    except (ValueError, FileNotFoundError) as error:
        print(f"scenic-eqx: error: {error}", file=sys.stderr)
        return 2
    if args.command != "export":
        _initialize_distributed(args)
    try:
        results = action(config, args.workdir)
    except loops.Preempted as preempted:
        print(f"scenic-eqx: {preempted} Run the same command to resume.", file=sys.stderr)
        return preempted.code
    except KeyboardInterrupt as interrupt:
        print(f"scenic-eqx: {str(interrupt) or 'Interrupted.'}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports a process that Ctrl-C ended
    if args.command == "export":
        print(f"exported {results}")
    elif isinstance(results, Mapping):  # a project's trainer may return nothing
        print("test " + json.dumps({k: _rounded(v) for k, v in results.items()}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
