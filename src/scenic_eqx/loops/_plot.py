"""A PNG of a run's training curves, from its `metrics.jsonl`."""

import json
import math
import os

from .._extras import require


def plot_metrics(jsonl_path: str | os.PathLike, png_path: str | os.PathLike) -> None:
    """Plots every metric of `jsonl_path` against the step, one panel per metric.

    Training and `eval_` versions of a metric share a panel; `examples_per_sec`,
    `learning_rate` and `num_params` are left out.

    Raises:
        ImportError: matplotlib is not installed (`pip install 'scenic-eqx[logging]'`).
    """
    matplotlib = require("matplotlib", "logging", "scenic_eqx.loops.plot_metrics")

    matplotlib.use("Agg")  # no display here; must precede pyplot
    import matplotlib.pyplot as plt

    curves: dict[str, dict[str, tuple[list, list]]] = {}
    with open(jsonl_path) as f:
        for line in f:
            record = json.loads(line)
            for name, value in record.items():
                if name in ("step", "examples_per_sec", "learning_rate", "num_params"):
                    continue
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    continue
                split, metric = ("eval", name[5:]) if name.startswith("eval_") else ("train", name)
                steps, values = curves.setdefault(metric, {}).setdefault(split, ([], []))
                steps.append(record["step"])
                values.append(value)
    if not curves:
        raise ValueError(f"{os.fspath(jsonl_path)!r} holds no metric to plot.")
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2), squeeze=False)
    for ax, (metric, splits) in zip(axes[0], sorted(curves.items())):
        for split, (steps, values) in sorted(splits.items()):
            ax.plot(steps, values, marker="." if split == "eval" else None, label=split)
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
