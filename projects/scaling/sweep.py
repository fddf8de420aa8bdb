"""Train every run of a scaling sweep (or this host's share), then report error vs compute.

    .venv/bin/python projects/scaling/sweep.py --config projects/scaling/configs/sweep.py \
        --workdir workdirs/scaling [--host_index I --num_hosts H] [--collect] [--config.KEY=VALUE ...]

Each run of the sweep config's list (`run_list.py`) trains through `scenic_eqx.run.train`
in `WORKDIR/runs/<name>/` and, once finished, writes its `result.json` there: test error
and loss, parameters and training FLOPs (the `num_params` and `flops_per_step` that
`loops.fit` records at step 0 of `metrics.jsonl`: 3x the analytic forward FLOPs of
`nn.forward_flops` per example, times the batch size; times the steps). A run with a
`result.json` is skipped, and one interrupted resumes from its checkpoint, so the same
command finishes an interrupted sweep.

With `--num_hosts H`, host `I` trains every `H`-th run from the `I`-th, and the hosts
share WORKDIR (a shared filesystem); `--collect`, run once they are all done, writes
the report. With one host the report is written after the last run. The report
(`report.py`): `results.csv`, `results.md`, `fit.json` and `scaling.png` in WORKDIR.
"""

import argparse
import json
import os
import sys
import time

import ml_collections

from scenic_eqx import run

_HERE = os.path.dirname(os.path.abspath(__file__))
run_list = run.import_file(os.path.join(_HERE, "run_list.py"))
report = run.import_file(os.path.join(_HERE, "report.py"))


def load_sweep_config(path: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
    """`get_config()` of the sweep config file `path`, with `KEY=VALUE` overrides applied.

    Raises:
        FileNotFoundError, ValueError: no such file, no `get_config`, or a bad override
            or sweep key (named in the message).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`--config` must be an existing sweep config file. Received: {path!r}.")
    module = run.import_file(path)
    if not callable(getattr(module, "get_config", None)):
        raise ValueError(f"`--config` file must define `get_config()`. Received: {path!r}.")
    sweep = module.get_config()
    for assignment in overrides:
        run.apply_override(sweep, assignment)
    run_list.check_sweep_config(sweep)
    return sweep


def _step_zero_record(workdir: str) -> dict:
    """The run's description that `loops.fit` logs as step 0 of `metrics.jsonl`."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("step") == 0:
                return record
    raise ValueError(f"{workdir}/metrics.jsonl has no step-0 record (`num_params`, `flops_per_step`).")


def train_run(sweep: ml_collections.ConfigDict, planned, workdir: str) -> dict:
    """Trains run `planned` of `sweep` by `run.train` (resuming it if interrupted) and
    writes its `result.json`; returns that result.

    Raises:
        ValueError: the task reports no `accuracy`, or the model has no FLOPs rule
            (`nn.forward_flops`), so the run's compute is unknown.
    """
    config = run_list.run_config(sweep, planned)
    directory = report.run_dir(workdir, planned)
    start = time.perf_counter()
    metrics = run.train(config, directory)
    wall_seconds = time.perf_counter() - start
    if "accuracy" not in metrics:
        raise ValueError(
            f"Run {planned.name}: the sweep reads the test error as 1 - `accuracy`, which the task "
            f"{config.task_name!r} does not report. Received test metrics: {sorted(metrics)}."
        )
    description = _step_zero_record(directory)
    if "flops_per_step" not in description:
        raise ValueError(
            f"Run {planned.name}: `loops.fit` logged no `flops_per_step`, as `nn.forward_flops` "
            f"has no rule for the model {config.model_name!r}; the sweep needs the training "
            f"compute of each run. Received: step-0 record {description}."
        )
    model = config.model
    result = dict(
        name=planned.name, size=planned.size, hidden_size=model.get("hidden_size"),
        num_layers=model.get("num_layers"), num_heads=model.get("num_heads"), mlp_dim=model.get("mlp_dim"),
        num_train_steps=planned.num_train_steps, train_percent=planned.train_percent,
        batch_size=config.batch_size, num_params=int(description["num_params"]),
        training_flops=description["flops_per_step"] * planned.num_train_steps,
        test_error=1.0 - metrics["accuracy"], test_loss=metrics["loss"], wall_seconds=wall_seconds,
    )  # fmt: skip
    report.write_result(workdir, planned, result)
    return result


def run_sweep(sweep: ml_collections.ConfigDict, workdir: str, *, host_index: int = 0, num_hosts: int = 1):
    """Trains this host's share of `sweep`'s runs in `workdir`, skipping finished ones.

    Returns:
        `(trained, skipped)`: the names of the runs trained now and of those found finished.
    """
    runs = run_list.host_share(run_list.plan_runs(sweep), host_index, num_hosts)
    trained, skipped = [], []
    for number, planned in enumerate(runs, 1):
        prefix = f"[{number}/{len(runs)}] {planned.name}:"
        if report.read_result(workdir, planned) is not None:
            skipped.append(planned.name)
            print(prefix, "finished earlier, skipped", flush=True)
            continue
        result = train_run(sweep, planned, workdir)
        trained.append(planned.name)
        print(
            prefix, f"test error {100 * result['test_error']:.2f}%, {result['num_params']:,} params, "
            f"{result['training_flops']:.2e} training FLOPs, {result['wall_seconds']:.0f} s", flush=True,
        )  # fmt: skip
    return trained, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the sweep config file (configs/sweep.py)")
    parser.add_argument("--workdir", required=True, help="where the runs and the report are written")
    parser.add_argument("--host_index", type=int, default=0, help="this host's index, in [0, num_hosts)")
    parser.add_argument("--num_hosts", type=int, default=1, help="hosts sharing the run list")
    parser.add_argument("--collect", action="store_true", help="train nothing: write the report")
    args, rest = parser.parse_known_args(argv)
    unknown = [a for a in rest if not a.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (overrides look like --config.KEY=VALUE)")
    sweep = load_sweep_config(args.config, [a.removeprefix("--config.") for a in rest])
    if not args.collect:
        run_sweep(sweep, args.workdir, host_index=args.host_index, num_hosts=args.num_hosts)
        if args.num_hosts > 1:
            print(f"host {args.host_index} of {args.num_hosts} done; once all are, run with --collect.")
            return 0
    result = report.collect(sweep, args.workdir)
    print(report.fit_summary(result))
    print(f"{len(result.rows)} runs in {os.path.join(args.workdir, 'results.md')}, plot: scaling.png")
    if result.missing:
        print(f"not finished ({len(result.missing)}): {', '.join(result.missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
