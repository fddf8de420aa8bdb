"""The scaling sweep: six ViT sizes x three training budgets on MNIST, 18 runs.

    .venv/bin/python projects/scaling/sweep.py --config projects/scaling/configs/sweep.py \
        --workdir workdirs/scaling

Each run is `configs/mnist_vit.py` (`base`) with one entry of `sizes` merged into its
`model`, trained for one of `num_train_steps` on the first `train_percents`% of the
training split (100: all of it) through `run.train`, in `WORKDIR/runs/<name>`. The
sweep then fits E(C) = E_inf + A (C / 1e12 FLOPs)^-alpha to the test error E of the
compute-efficient frontier (`fit_on`) and writes `results.csv`, `results.md`,
`fit.json` and `scaling.png` to WORKDIR. Measured (projects/scaling/README.md): test
errors from 70% (w8_d1, 50 steps) to 5.0% (w128_d6, 450 steps); on the 9 frontier points
E_inf = 0.000 +- 0.027, A = 0.074 +- 0.025, alpha = 0.34 +- 0.05; 10.5 min of CPU time
(22 min of wall time on 2 CPU cores shared with other jobs).

Widths step from 8 to 128 with depths 1 to 6; heads are 16 wide (S/16's are 64) and the
MLP is 4x the width, as in every ViT of Dosovitskiy et al. (2021). The budgets grow by
3x, so each size's curve spans 9x in compute and neighbouring sizes overlap.
"""

import os

import ml_collections

CONFIGS = os.path.dirname(os.path.abspath(__file__))


def _size(hidden_size: int, num_layers: int) -> dict[str, int]:
    return dict(
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=max(1, hidden_size // 16),
        mlp_dim=4 * hidden_size,
    )


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # The training config every run starts from: `FILE` or `FILE:ARG`, as `--config`.
    config.base = os.path.join(CONFIGS, "mnist_vit.py")
    # Model sizes by name: each merged into the base config's `model`.
    config.sizes = ml_collections.ConfigDict(
        {
            "w8_d1": _size(8, 1),
            "w16_d1": _size(16, 1),
            "w32_d2": _size(32, 2),
            "w64_d3": _size(64, 3),
            "w96_d4": _size(96, 4),
            "w128_d6": _size(128, 6),
        }
    )
    # Compute budgets: optimizer steps of the base config's batch size.
    config.num_train_steps = (50, 150, 450)
    # Data budgets: each run trains on `train[:P%]` (100: the whole training split).
    config.train_percents = (100,)
    # Learning-rate warmup as a fraction of each run's steps (the schedule's `warmup_steps`).
    config.warmup_fraction = 0.1
    # The points the power law is fitted to: "frontier" (the compute-efficient frontier,
    # each point better than every cheaper one) or "all".
    config.fit_on = "frontier"
    return config
