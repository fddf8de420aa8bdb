"""What a run started on a workdir says, and checks, before it trains.

`fit` on a workdir that holds a checkpoint resumes from it and says so, on the
`scenic_eqx` logger (INFO) and on the terminal (above the progress bar):
`resumed from step 100 of 1000 (workdir /w)`. A run already at its last step is not
trained again: `run already finished at step 1000 (workdir /w)`. A fresh start says
nothing.

`workdir/run.json` (`{"num_steps": 1000}`) records the `num_steps` of the latest start.
A run resumed with another `num_steps` warns that the learning-rate schedules built
from `num_steps` change shape from the resumed step on:
`num_steps changed from 1000 to 2000: the learning-rate schedule is rebuilt for 2000
steps and continues from step 1000`.
"""

import json
import logging
import os
import sys
import tempfile

from tqdm.auto import tqdm

LOGGER = logging.getLogger("scenic_eqx")
RUN_RECORD = "run.json"


def report(message: str, level: int = logging.INFO, *, show: bool = True) -> None:
    """Logs `message` on the `scenic_eqx` logger and, if `show`, prints it to stderr
    (through tqdm, so that a progress bar is not torn).

    Warnings are not printed: a logging handler shows them already (the user's, or
    Python's last-resort handler).
    """
    LOGGER.log(level, message)
    # A warning is shown by the user's handler or, without one, by Python's last-resort
    # handler; an info record by neither unless the user asked for it: print it.
    if show and level < logging.WARNING:
        tqdm.write(message, file=sys.stderr)


def read_num_steps(workdir: str | os.PathLike) -> int | None:
    """The `num_steps` recorded in `workdir/run.json`, or `None` if there is none."""
    path = os.path.join(os.fspath(workdir), RUN_RECORD)
    try:
        with open(path) as f:
            num_steps = json.load(f)["num_steps"]
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as error:
        report(f"{path} is unreadable ({error!r}): `num_steps` is not compared with it.", logging.WARNING)
        return None
    return num_steps


def write_run_record(workdir: str | os.PathLike, num_steps: int) -> None:
    """Writes `workdir/run.json`, whole or not at all (a temporary file renamed over it)."""
    directory = os.fspath(workdir)
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".run.", suffix=".json")
    try:
        with os.fdopen(descriptor, "w") as f:
            json.dump({"num_steps": num_steps}, f)
        os.chmod(temporary, 0o644)  # mkstemp's file is private
        os.replace(temporary, os.path.join(directory, RUN_RECORD))
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def start_in_workdir(
    workdir: str | os.PathLike, *, restored_step: int | None, num_steps: int, is_main_process: bool
) -> bool:
    """Checks a run against the workdir it starts in, reports where it starts, and
    records its `num_steps`.

    Arguments:
        workdir: the run's directory.
        restored_step: the step of the checkpoint the run resumes from; `None` for a
            fresh start.
        num_steps: the run's total number of steps.
        is_main_process: whether this process prints and writes `run.json` (process 0).

    Returns:
        Whether the run is already finished (restored at `num_steps`): nothing is left
        to train, and `run.json` is left as it was.

    Raises:
        ValueError: `num_steps` is below the restored step (the run went further already).
    """
    where = os.path.abspath(os.fspath(workdir))
    if restored_step is not None:
        if restored_step > num_steps:
            raise ValueError(
                f"`num_steps` (={num_steps}) is below the step of the newest checkpoint in "
                f"{os.path.join(where, 'checkpoints')} ({restored_step}): that run went further "
                f"already. Pass `num_steps` >= {restored_step} to continue it, or another `workdir` "
                f"to start again. Received: num_steps={num_steps}."
            )
        if restored_step == num_steps:
            report(f"run already finished at step {num_steps} (workdir {where})", show=is_main_process)
            return True
        report(f"resumed from step {restored_step} of {num_steps} (workdir {where})", show=is_main_process)
        previous = read_num_steps(workdir)
        if previous is not None and previous != num_steps:
            report(
                f"num_steps changed from {previous} to {num_steps}: the learning-rate schedule is "
                f"rebuilt for {num_steps} steps and continues from step {restored_step}",
                logging.WARNING,
                show=is_main_process,
            )
    if is_main_process:
        write_run_record(workdir, num_steps)
    return False
