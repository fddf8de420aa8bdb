"""The `scenic-eqx` command: `scenic-eqx {train,eval} --config FILE --workdir DIR [--config.key=value ...]`."""

import argparse
import json
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenic-eqx",
        description="Train or evaluate a scenic_eqx config.",
        epilog="Override any config value with --config.KEY=VALUE (e.g. --config.num_train_steps=100).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in [("train", "train (resuming from DIR's checkpoint), then evaluate on test"),
                       ("eval", "evaluate DIR's latest checkpoint on test")]:
        command = commands.add_parser(name, help=text)
        command.add_argument("--config", required=True, help="a config file, FILE or FILE:ARG")
        command.add_argument("--workdir", required=True, help="checkpoints and logs go here")
        hosts = command.add_argument_group(
            "multi-host", "run one process per host, each with the same command and its own --process_id"
        )
        hosts.add_argument(
            "--distributed", action="store_true",
            help="call jax.distributed.initialize() first (cluster settings auto-detected "
                 "on Cloud TPU, SLURM and Open MPI; implied by the options below)",
        )  # fmt: skip
        hosts.add_argument("--coordinator_address", help="HOST:PORT of process 0")
        hosts.add_argument("--num_processes", type=int, help="the number of processes (hosts)")
        hosts.add_argument("--process_id", type=int, help="this process's index, from 0")
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

        jax.distributed.initialize(**explicit)


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separates `--config.key=value` (or `--config.key value`) from the other arguments."""
    rest, overrides = [], []
    args = iter(argv)
    for arg in args:
        if arg.startswith("--config."):
            assignment = arg[len("--config."):]
            if "=" not in assignment:
                assignment += "=" + next(args, "")
            overrides.append(assignment)
        else:
            rest.append(arg)
    return rest, overrides


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    rest, overrides = _split_overrides(argv)
    args = _parser().parse_args(rest)
    from . import _config, _experiment

    try:
        config = _config.load_config(args.config)
        for assignment in overrides:
            _config.apply_override(config, assignment)
    except (ValueError, FileNotFoundError) as error:
        print(f"scenic-eqx: error: {error}", file=sys.stderr)
        return 2
    _initialize_distributed(args)
    run = _experiment.train if args.command == "train" else _experiment.evaluate
    results = run(config, args.workdir)
    print("test " + json.dumps({k: round(v, 5) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
