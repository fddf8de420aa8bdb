"""The sweep's run list: one training config per (model size, training steps, data percent).

A sweep config (`configs/sweep.py`) names a base training config, model sizes and
budgets; `plan_runs` lists every combination in a fixed order, `host_share` gives host
`i` of `H` every `H`-th run (so `H` hosts cover the list once between them), and
`run_config` builds the training config of one run.
"""

import dataclasses
import math

import ml_collections

from scenic_eqx import run

FIT_ON = ("frontier", "all")
SWEEP_KEYS = ("base", "sizes", "num_train_steps", "train_percents", "warmup_fraction", "fit_on")


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One point of the sweep: a model size trained for a budget of steps and data."""

    size: str
    num_train_steps: int
    train_percent: int

    @property
    def name(self) -> str:
        """The run's sub-directory of the sweep's workdir, e.g. `w64_d3_steps450_data100`."""
        return f"{self.size}_steps{self.num_train_steps}_data{self.train_percent}"


def _positive_ints(name: str, values, *, maximum: float = math.inf) -> tuple[int, ...]:
    values = tuple(values) if isinstance(values, list | tuple) else (values,)
    if not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= maximum for v in values
    ):
        bound = "" if maximum == math.inf else f" of at most {maximum}"
        raise ValueError(
            f"`config.{name}` must be a non-empty tuple of positive ints{bound}. Received: {values!r}."
        )
    if len(set(values)) != len(values):
        raise ValueError(f"`config.{name}` must not repeat a value. Received: {values!r}.")
    return values


def check_sweep_config(sweep: ml_collections.ConfigDict) -> None:
    """Raises `ValueError` naming the key when `sweep` is not a sweep config."""
    missing = [key for key in SWEEP_KEYS if key not in sweep]
    if missing:
        raise ValueError(
            f"A sweep config must set {', '.join(missing)} (see configs/sweep.py). "
            f"Received keys: {sorted(sweep.keys())}."
        )
    if not isinstance(sweep.sizes, ml_collections.ConfigDict) or not sweep.sizes:
        raise ValueError(
            "`config.sizes` must be a non-empty group of named model sizes, each a group of the "
            f"model's constructor arguments. Received: {sweep.sizes!r}."
        )
    for name, size in sweep.sizes.items():
        if not isinstance(size, ml_collections.ConfigDict):
            raise ValueError(
                f"`config.sizes.{name}` must be a group of model constructor arguments "
                f"(e.g. hidden_size, num_layers). Received: {size!r}."
            )
    _positive_ints("num_train_steps", sweep.num_train_steps)
    _positive_ints("train_percents", sweep.train_percents, maximum=100)
    if not 0.0 <= sweep.warmup_fraction < 1.0:
        raise ValueError(f"`config.warmup_fraction` must be in [0, 1). Received: {sweep.warmup_fraction!r}.")
    if sweep.fit_on not in FIT_ON:
        raise ValueError(f"`config.fit_on` must be one of {FIT_ON}. Received: {sweep.fit_on!r}.")


def plan_runs(sweep: ml_collections.ConfigDict) -> list[PlannedRun]:
    """Every run of `sweep`: sizes in name order (a `ConfigDict` sorts its keys), then
    steps, then data percents.

    Raises:
        ValueError: `sweep` lacks a key or holds a bad value (named in the message).
    """
    check_sweep_config(sweep)
    return [
        PlannedRun(size, steps, percent)
        for size in sweep.sizes
        for steps in _positive_ints("num_train_steps", sweep.num_train_steps)
        for percent in _positive_ints("train_percents", sweep.train_percents, maximum=100)
    ]


def host_share(runs: list[PlannedRun], host_index: int, num_hosts: int) -> list[PlannedRun]:
    """The runs host `host_index` of `num_hosts` trains: every `num_hosts`-th, from its index.

    Raises:
        ValueError: `num_hosts` is not a positive int, or `host_index` not in `[0, num_hosts)`.
    """
    if isinstance(num_hosts, bool) or not isinstance(num_hosts, int) or num_hosts < 1:
        raise ValueError(f"`num_hosts` must be a positive int. Received: {num_hosts!r}.")
    if isinstance(host_index, bool) or not isinstance(host_index, int) or not 0 <= host_index < num_hosts:
        raise ValueError(
            f"`host_index` must be an int in [0, num_hosts={num_hosts}). Received: {host_index!r}."
        )
    return runs[host_index::num_hosts]


def run_config(sweep: ml_collections.ConfigDict, planned: PlannedRun) -> ml_collections.ConfigDict:
    """The training config of `planned`: the base config with its size, steps and data.

    The size's arguments replace the base `model`'s; `num_train_steps` and
    `checkpoint_every` become the run's steps (one checkpoint, at the end), the schedule's
    `warmup_steps` (if it has one) `warmup_fraction` of them, and below 100 percent the
    dataset reads `train[:P%]` (a dataset with a `train_split` option: the TFDS catalogue).
    """
    config = run.load_config(sweep.base)
    steps = planned.num_train_steps
    with config.unlocked():
        config.model.update(sweep.sizes[planned.size].to_dict())
        config.num_train_steps = steps
        config.checkpoint_every = steps
        config.log_every = min(config.log_every, steps)
        if config.get("eval_every") is not None:
            config.eval_every = min(config.eval_every, steps)
        if "warmup_steps" in config.get("schedule_kwargs", {}):
            config.schedule_kwargs.warmup_steps = round(sweep.warmup_fraction * steps)
        if planned.train_percent < 100:
            config.dataset.train_split = f"train[:{planned.train_percent}%]"
    return config
