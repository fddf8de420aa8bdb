"""Periodic actions of a training loop, with one rule for when each is due."""

import dataclasses
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Periodic:
    """An action due every `every` steps and at the last step of the run.

    Fields:
        name: what the action does, for error messages.
        every: its period in steps; `None` runs it at the last step only.
        run: `run(step) -> record`, the values it adds to the step's record.
    """

    name: str
    every: int | None
    run: Callable[[int], dict[str, float]]

    def is_due(self, step: int, last_step: int) -> bool:
        return step == last_step or (self.every is not None and step % self.every == 0)


def run_due(actions: Sequence[Periodic], step: int, last_step: int) -> dict[str, float]:
    """Runs, in order, every action due at `step`; returns their merged record."""
    record: dict[str, float] = {}
    for action in actions:
        if action.is_due(step, last_step):
            record.update(action.run(step))
    return record
