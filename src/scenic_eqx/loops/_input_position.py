"""Where the training input stands at each checkpoint, for resuming without replay.

`fit` resumes a run at step N. An iterable of batches that can save its position
(`save_state(directory)` / `restore_state(directory)`, the protocol of
`scenic_eqx.data.ResumableIterator`: every `Dataset.train_iter` of `get_dataset`) has
its position saved beside each checkpoint and restored in a time that does not grow with
N; any other iterable is replayed (its first N batches read and dropped).
"""

import os
import shutil
from collections.abc import Iterable

import jax


def is_resumable(batches: Iterable) -> bool:
    """Whether `batches` can save and restore its position (duck-typed, so that the
    loops need not import the data package)."""
    return callable(getattr(batches, "save_state", None)) and callable(
        getattr(batches, "restore_state", None)
    )


class InputPosition:
    """Saves and restores the position of a resumable `train_batches` beside checkpoints.

    States go to `workdir/input_state/<step>/process_<i>`: each host saves its own.

    Arguments:
        batches: the training batches `fit` iterates over.
        workdir: the run's directory, or `None` (nothing is saved).
    """

    def __init__(self, batches: Iterable, workdir: str | os.PathLike | None):
        self._batches = batches
        self._root = None if workdir is None else os.path.join(os.fspath(workdir), "input_state")
        self.enabled = self._root is not None and is_resumable(batches)

    def _directory(self, step: int) -> str:
        return os.path.join(self._root, str(step), f"process_{jax.process_index()}")

    def save(self, step: int) -> None:
        """Saves the position after the batches of steps 1..`step` were taken."""
        if self.enabled:
            self._batches.save_state(self._directory(step))

    def restore(self, step: int) -> bool:
        """Moves the batches to the position saved at `step`; whether there was one.

        A state saved by another pipeline raises the iterator's `ValueError` (a resumed
        run must not read other data); a missing state means replay.
        """
        if not self.enabled or not os.path.isdir(self._directory(step)):
            return False
        try:
            self._batches.restore_state(self._directory(step))
        except FileNotFoundError:  # a save cut short: replay instead
            return False
        return True

    def keep_only(self, steps: Iterable[int]) -> None:
        """Removes the states of steps whose checkpoints are gone (process 0 only)."""
        if not self.enabled or jax.process_index() != 0 or not os.path.isdir(self._root):
            return
        kept = {str(step) for step in steps}
        for name in os.listdir(self._root):
            if name not in kept:
                shutil.rmtree(os.path.join(self._root, name), ignore_errors=True)
