"""The `scenic-eqx` command: `scenic-eqx {train,eval} --config FILE --workdir DIR [--config.key=value ...]`.

Exit codes: 0 done; 2 a bad command line or config; 143 preempted (SIGTERM) after
saving a checkpoint: the same command resumes; 130 interrupted (Ctrl-C); 124 a process
made no progress for `config.step_timeout_seconds` (see docs/fault_tolerance.md).
"""

import argparse
import json
import sys

# JAX's default heartbeat timeout is 100 s: a dead peer would hold the others that long.
HEARTBEAT_TIMEOUT_SECONDS = 30
SHUTDOWN_TIMEOUT_SECONDS = 300  # JAX's default


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
    from . import _config, _experiment, loops

    try:
        config = _config.load_config(args.config)
        for assignment in overrides:
            _config.apply_override(config, assignment)
    except (ValueError, FileNotFoundError) as error:
        print(f"scenic-eqx: error: {error}", file=sys.stderr)
        return 2
    _initialize_distributed(args)
    run = _experiment.train if args.command == "train" else _experiment.evaluate
    try:
        results = run(config, args.workdir)
    except loops.Preempted as preempted:
        print(f"scenic-eqx: {preempted} Run the same command to resume.", file=sys.stderr)
        return preempted.code
    except KeyboardInterrupt as interrupt:
        print(f"scenic-eqx: {str(interrupt) or 'Interrupted.'}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports a process that Ctrl-C ended
    print("test " + json.dumps({k: round(v, 5) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
