"""The sweep's report: every run's result in a table, the power law fitted, error vs compute plotted.

`collect` reads the `result.json` each run left in `WORKDIR/runs/<name>/` (whichever
host trained it), marks the compute-efficient frontier, fits the saturating power law
(`power_law.py`) and writes `results.csv`, `results.md`, `fit.json` and `scaling.png`
to WORKDIR.
"""

import csv
import dataclasses
import json
import os

import numpy as np

from scenic_eqx import run

_HERE = os.path.dirname(os.path.abspath(__file__))
power_law = run.import_file(os.path.join(_HERE, "power_law.py"))
run_list = run.import_file(os.path.join(_HERE, "run_list.py"))

RESULT_FILE = "result.json"
COLUMNS = (
    "name", "size", "hidden_size", "num_layers", "num_heads", "mlp_dim", "num_train_steps",
    "train_percent", "batch_size", "num_params", "training_flops", "test_error", "test_loss",
    "on_frontier", "wall_seconds",
)  # fmt: skip


@dataclasses.dataclass
class Report:
    """The rows of the finished runs, the names of the missing ones, and the fit (or why none)."""

    rows: list[dict]
    missing: list[str]
    fit: "power_law.PowerLawFit | None"
    fit_on: str
    no_fit_reason: str | None = None


def run_dir(workdir: str, planned) -> str:
    """Where run `planned` of the sweep in `workdir` trains and leaves its `result.json`."""
    return os.path.join(workdir, "runs", planned.name)


def read_result(workdir: str, planned) -> dict | None:
    """The `result.json` of run `planned`, or `None` if it has not finished."""
    path = os.path.join(run_dir(workdir, planned), RESULT_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_result(workdir: str, planned, result: dict) -> None:
    """Writes run `planned`'s `result.json` whole or not at all (a rename), last of the run."""
    path = os.path.join(run_dir(workdir, planned), RESULT_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(path + ".tmp", path)


def collect(sweep, workdir: str) -> Report:
    """Reads the finished runs of `sweep` in `workdir`, fits the law and writes the report files.

    Returns:
        The `Report`; the fit is `None` (with the reason) when fewer than 4 points are
        fitted, as in a sweep of 2 runs.
    """
    rows, missing = [], []
    for planned in run_list.plan_runs(sweep):
        result = read_result(workdir, planned)
        if result is None:
            missing.append(planned.name)
        else:
            rows.append(result)
    rows.sort(key=lambda r: (r["num_params"], r["size"], r["num_train_steps"], r["train_percent"]))
    compute = np.array([r["training_flops"] for r in rows], float)
    error = np.array([r["test_error"] for r in rows], float)
    on_frontier = power_law.compute_efficient_frontier(compute, error)
    for row, flag in zip(rows, on_frontier):
        row["on_frontier"] = bool(flag)
    fitted = on_frontier if sweep.fit_on == "frontier" else np.ones_like(on_frontier)
    fit, reason = None, None
    try:
        # Weights: each test error's binomial standard error, up to a common factor
        # (curve_fit rescales the covariance by the residuals), floored away from 0.
        error_std = np.sqrt(np.maximum(error * (1 - error), 1e-4))
        fit = power_law.fit_power_law(compute[fitted], error[fitted], error_std=error_std[fitted])
    except ValueError as failure:
        reason = str(failure)
    report = Report(rows, missing, fit, sweep.fit_on, reason)
    write_csv(report, os.path.join(workdir, "results.csv"))
    write_markdown(report, os.path.join(workdir, "results.md"))
    with open(os.path.join(workdir, "fit.json"), "w") as f:
        json.dump(None if fit is None else dataclasses.asdict(fit) | {"fit_on": sweep.fit_on}, f, indent=2)
    plot(report, os.path.join(workdir, "scaling.png"))
    return report


def write_csv(report: Report, path: str) -> None:
    """One row per finished run, the columns of `COLUMNS`."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(report.rows)


def fit_summary(report: Report) -> str:
    """The fitted law in one line, with each parameter's standard error."""
    fit = report.fit
    if fit is None:
        return f"No power-law fit: {report.no_fit_reason}"
    return (
        f"E(C) = E_inf + A (C / {fit.compute_unit:.0e} FLOPs)^-alpha on {fit.num_points} points "
        f"({report.fit_on}): E_inf = {fit.e_inf:.4f} ± {fit.e_inf_std:.4f}, "
        f"A = {fit.a:.4f} ± {fit.a_std:.4f}, alpha = {fit.alpha:.3f} ± {fit.alpha_std:.3f}"
    )


def write_markdown(report: Report, path: str) -> None:
    """The table of runs (frontier points in bold) and the fit, as Markdown."""
    lines = [
        "| size | params | steps | data | training FLOPs | test error | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report.rows:
        cells = [
            row["size"], f"{row['num_params']:,}", str(row["num_train_steps"]), f"{row['train_percent']}%",
            f"{row['training_flops']:.2e}", f"{100 * row['test_error']:.2f}%", f"{row['wall_seconds']:.0f} s",
        ]  # fmt: skip
        if row["on_frontier"]:
            cells = [f"**{cell}**" for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Bold: the compute-efficient frontier.", "", fit_summary(report) + "."]
    if report.missing:
        lines += ["", f"Not finished ({len(report.missing)}): {', '.join(report.missing)}."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(report: Report, path: str) -> None:
    """Test error against training FLOPs (log-log): one line per model size over its
    budgets, the frontier circled, and the fitted law over the fitted points' range."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")  # files only; no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=100)
    axes.set_yscale("log")
    sizes = list(dict.fromkeys(row["size"] for row in report.rows))
    colours = plt.cm.viridis(np.linspace(0, 0.9, max(len(sizes), 1)))
    for size, colour in zip(sizes, colours):
        points = sorted(
            (r["training_flops"], r["test_error"], r["num_params"]) for r in report.rows if r["size"] == size
        )
        compute, error, params = zip(*points)
        axes.plot(compute, error, "o-", color=colour, label=f"{size} ({params[0] / 1e3:,.0f}k params)")
    frontier = sorted((r["training_flops"], r["test_error"]) for r in report.rows if r["on_frontier"])
    if frontier:
        axes.plot(
            *zip(*frontier), "o", markersize=11, markerfacecolor="none", color="black", label="frontier"
        )
    if report.fit is not None:
        fitted = [r["training_flops"] for r in report.rows if r["on_frontier"] or report.fit_on == "all"]
        grid = np.geomspace(min(fitted), max(fitted), 200)
        fit = report.fit
        law = f"fit: {fit.e_inf:.3f} + {fit.a:.3f} (C / {fit.compute_unit:.0e})^-{fit.alpha:.2f}"
        axes.plot(grid, fit(grid), "--", color="black", label=law)
    errors = [r["test_error"] for r in report.rows if r["test_error"] > 0]
    if errors:  # the axis spans the errors measured, E_inf drawn only where it falls inside
        low, high = min(errors) / 1.3, min(1.0, max(errors) * 1.3)
        axes.set_ylim(low, high)
        if report.fit is not None and report.fit.e_inf > low:
            axes.axhline(
                report.fit.e_inf, color="grey", linestyle=":", label=f"E_inf = {report.fit.e_inf:.3f}"
            )
        ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0) if low <= t <= high]
        axes.set_yticks(ticks, [f"{100 * t:g}%" for t in ticks])
        axes.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set(xscale="log", xlabel="training compute (FLOPs)", ylabel="test error")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
