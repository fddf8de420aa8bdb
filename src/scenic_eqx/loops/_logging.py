"""Where a run's numbers go: a progress bar, `metrics.jsonl` and TensorBoard events."""

import json
import math
import os

import tqdm


class RunLogger:
    """Writes each logged step to a progress bar, `workdir/metrics.jsonl` and TensorBoard.

    Only the first host (`process_index == 0`) writes; the other hosts' loggers do nothing.

    Arguments:
        workdir: where `metrics.jsonl` and the event files go; `None` keeps numbers in
            memory and on the progress bar only.
        num_steps: the run's final step (the progress bar's length).
        initial_step: where the bar starts (a resumed run).
        enabled: whether this host writes.
        progress: whether to show the progress bar.
    """

    def __init__(
        self,
        workdir: str | os.PathLike | None,
        *,
        num_steps: int,
        initial_step: int = 0,
        enabled: bool = True,
        progress: bool = True,
    ):
        self._jsonl = None
        self._tensorboard = None
        if enabled and workdir is not None:
            from tensorboardX import SummaryWriter  # imported here: slow, and only needed with a workdir

            os.makedirs(workdir, exist_ok=True)
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
            self._tensorboard = SummaryWriter(logdir=os.fspath(workdir))
        self._bar = tqdm.tqdm(
            total=num_steps,
            initial=initial_step,
            disable=not (enabled and progress),
            dynamic_ncols=True,
            unit="step",
        )

    def advance(self, steps: int = 1) -> None:
        self._bar.update(steps)

    def write(self, step: int, values: dict[str, float]) -> None:
        """Records `values` at `step` (NaN and Inf are written as strings in JSON)."""
        if self._jsonl is not None:
            record = {"step": step}
            record.update({k: v if math.isfinite(v) else str(v) for k, v in values.items()})
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        if self._tensorboard is not None:
            for name, value in values.items():
                self._tensorboard.add_scalar(name, value, step)
            self._tensorboard.flush()
        shown = {k: f"{v:.4g}" for k, v in values.items() if k in _ON_BAR}
        if shown:
            self._bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        self._bar.close()
        if self._jsonl is not None:
            self._jsonl.close()
            self._tensorboard.close()


_ON_BAR = ("loss", "examples_per_sec", "eval_accuracy", "eval_loss")
