"""Step-time measurements shared by `convnet_step.py` and `detr_step.py`: each
implementation in a fresh process, alternating, and `loops.fit`'s own timing."""

import statistics
import subprocess
import sys


def fit_seconds_per_step(history: list[dict], warmup: int, batch_size: int) -> float:
    """Seconds per step after the first `warmup` steps, from `loops.fit`'s throughput
    records (each window ends in a device sync and leaves compilation out); the records
    must be logged every `warmup` steps."""
    seconds, previous = 0.0, warmup
    for record in history[1:]:
        seconds += (record["step"] - previous) * batch_size / record["examples_per_sec"]
        previous = record["step"]
    return seconds / (previous - warmup)


def run_alternating(script: str, impls: list[str], repeats: int, worker_args: list[str], title: str) -> None:
    """Runs `script --worker IMPL *worker_args` for every implementation, `repeats`
    times, alternating the order, and prints the median and min-max seconds per step of
    each with the ratios of medians."""
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    for repeat in range(repeats):
        for impl in impls if repeat % 2 == 0 else impls[::-1]:  # no implementation always first
            command = [sys.executable, script, "--worker", impl, *worker_args]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            times[impl].append(float(out.strip().splitlines()[-1]))
            print(f"repeat {repeat} {impl:28s} {times[impl][-1]:.3f} s/step", flush=True)
    print(f"\n{title}: seconds per step, median (min-max) of {repeats} runs")
    medians = {impl: statistics.median(v) for impl, v in times.items()}
    for impl, v in times.items():
        ratios = ", ".join(
            f"{other} / this = {medians[other] / medians[impl]:.2f}" for other in impls if other != impl
        )
        print(f"{impl:28s} {medians[impl]:.3f} ({min(v):.3f}-{max(v):.3f})  {ratios}")
