"""Where a run's numbers go: a progress bar, `metrics.jsonl` and TensorBoard events.

TensorBoard events need tensorboardX (`pip install 'scenic-eqx[logging]'`); without it a
run logs that they are off and writes the rest.

`metrics.jsonl` holds one JSON object a line: `{"step": 0, "num_params": ...}` describing
the run, then one record per logged step (`{"step": 50, "loss": ..., ...}`; NaN and Inf
as the strings `"nan"`, `"inf"`, `"-inf"`).
"""

import json
import math
import os
import tempfile

# `tqdm.auto`: a widget in Jupyter (with ipywidgets), text in a terminal.
from tqdm.auto import tqdm

from .._extras import optional


class RunLogger:
    """Writes each logged step to a progress bar, `workdir/metrics.jsonl` and TensorBoard.

    Only the first host (`process_index == 0`) writes; the other hosts' loggers do nothing.

    Arguments:
        workdir: where `metrics.jsonl` and the event files go; `None` keeps numbers in
            memory and on the progress bar only.
        num_steps: the run's final step (the progress bar's length).
        initial_step: the step the run starts from (a resumed run's restored step): the
            bar starts there, and what an earlier attempt logged after it is dropped
            from `metrics.jsonl` (`drop_records_from`) and hidden in TensorBoard, as the
            run logs those steps again. A fresh start (0) drops every record.
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
            os.makedirs(workdir, exist_ok=True)
            first_step = initial_step + 1 if initial_step else 0
            drop_records_from(workdir, first_step)
            self._jsonl = open(metrics_path(workdir), "a")
            # Imported here: slow, and only needed with a workdir.
            tensorboardx = optional("tensorboardX", "logging", "TensorBoard events are off")
            if tensorboardx is not None:
                # `purge_step`: TensorBoard hides the events an earlier attempt wrote from there on.
                self._tensorboard = tensorboardx.SummaryWriter(
                    logdir=os.fspath(workdir), purge_step=first_step or None
                )
        self._bar = tqdm(
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
            self._jsonl.write(_encode({"step": step, **values}) + "\n")
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
        if self._tensorboard is not None:
            self._tensorboard.close()


_ON_BAR = ("loss", "examples_per_sec", "eval_accuracy", "eval_loss")


_NON_FINITE = ("nan", "inf", "-inf")  # how `_encode` writes non-finite values


def metrics_path(workdir: str | os.PathLike) -> str:
    """`workdir/metrics.jsonl`."""
    return os.path.join(os.fspath(workdir), "metrics.jsonl")


def _encode(record: dict[str, int | float]) -> str:
    return json.dumps({k: v if math.isfinite(v) else str(v) for k, v in record.items()})


def _decode(line: str) -> dict[str, int | float] | None:
    """The record of one line, or `None` for a line cut short (a crash while writing it)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        return None
    return {k: float(v) if v in _NON_FINITE else v for k, v in record.items()}


def _read_records(workdir: str | os.PathLike) -> list[dict[str, int | float]]:
    try:
        with open(metrics_path(workdir)) as f:
            lines = f.readlines()
    except FileNotFoundError:
        return []
    return [record for record in map(_decode, lines) if record is not None]


def read_history(workdir: str | os.PathLike, last_step: int) -> list[dict[str, int | float]]:
    """The records of steps 1..`last_step` in `workdir/metrics.jsonl`, as `fit`'s history.

    The step-0 record (the run's description: `num_params`, ...) is not part of the
    history; NaN and Inf come back as floats. An absent file gives `[]`.
    """
    return [r for r in _read_records(workdir) if 1 <= r["step"] <= last_step]


def drop_records_from(workdir: str | os.PathLike, step: int) -> int:
    """Removes the records of `step` and later from `workdir/metrics.jsonl`; how many.

    A run that crashed after logging step 130 with its latest checkpoint at step 100
    resumes at 101 and logs steps 101..130 again: without this they would be there
    twice. The file is rewritten to a temporary file, then renamed over the old one,
    so that a crash leaves either the old or the new file whole. Lines cut short by a
    crash are dropped too.
    """
    path = metrics_path(workdir)
    try:
        with open(path) as f:
            lines = f.readlines()
    except FileNotFoundError:
        return 0
    kept = [line for line in lines if (record := _decode(line)) is not None and record["step"] < step]
    if len(kept) == len(lines):
        return 0
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".metrics.", suffix=".jsonl")
    try:
        with os.fdopen(descriptor, "w") as f:
            f.writelines(line if line.endswith("\n") else line + "\n" for line in kept)
        os.chmod(temporary, os.stat(path).st_mode & 0o777)  # mkstemp's file is private
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return len(lines) - len(kept)
