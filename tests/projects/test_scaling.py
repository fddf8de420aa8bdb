"""projects/scaling: the power-law fit recovers a known law, the run list splits across
hosts, and a two-run sweep trains, reports and, run again, skips what it finished."""

import csv
import json
import os

import numpy as np
import pytest

from scenic_eqx import run

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROJECT = os.path.join(ROOT, "projects", "scaling")
SWEEP_CONFIG = os.path.join(PROJECT, "configs", "sweep.py")
SMOKE_CONFIG = os.path.join(PROJECT, "configs", "smoke.py")

power_law = run.import_file(os.path.join(PROJECT, "power_law.py"))
run_list = run.import_file(os.path.join(PROJECT, "run_list.py"))
sweep = run.import_file(os.path.join(PROJECT, "sweep.py"))


def test_fit_recovers_a_known_law_from_noisy_points():
    true = dict(e_inf=0.02, a=0.3, alpha=0.25)
    compute = np.geomspace(1e10, 1e16, 14)
    clean = power_law.saturating_power_law(compute / 1e12, **true)
    noisy = clean * (1 + 0.02 * np.random.default_rng(0).standard_normal(compute.size))
    fit = power_law.fit_power_law(compute, noisy, error_std=0.02 * clean)
    assert fit.num_points == 14 and fit.compute_unit == 1e12
    for name, value in true.items():
        estimate, std = getattr(fit, name), getattr(fit, f"{name}_std")
        assert 0 < std < 0.2 * value, (name, std)
        assert abs(estimate - value) < 3 * std, (name, estimate, value, std)
    # The fitted law, called on FLOPs, is the law at those FLOPs in units of 1e12.
    np.testing.assert_allclose(
        fit(compute), power_law.saturating_power_law(compute / 1e12, fit.e_inf, fit.a, fit.alpha)
    )


def test_fit_of_exact_points_is_exact_and_needs_four_points():
    compute = np.array([1e11, 1e12, 1e13, 1e14])
    error = power_law.saturating_power_law(compute / 1e12, 0.05, 0.1, 0.5)
    fit = power_law.fit_power_law(compute, error)
    np.testing.assert_allclose([fit.e_inf, fit.a, fit.alpha], [0.05, 0.1, 0.5], rtol=1e-4)
    with pytest.raises(ValueError, match=r"at least 4 points\. Received: 3"):
        power_law.fit_power_law(compute[:3], error[:3])
    with pytest.raises(ValueError, match=r"`compute` must be positive"):
        power_law.fit_power_law(np.array([0.0, 1.0, 2.0, 3.0]), error)


def test_frontier_keeps_each_point_better_than_every_cheaper_one():
    compute = np.array([4.0, 1.0, 2.0, 3.0, 2.0, 5.0])
    error = np.array([0.30, 0.50, 0.60, 0.40, 0.45, 0.30])
    # By compute: 1 (0.50) yes; 2 (0.45 beats 0.60) yes, once; 3 (0.40) yes; 4 (0.30) yes;
    # 5 (0.30, no better than 0.30) no.
    expected = [True, True, False, True, True, False]
    np.testing.assert_array_equal(power_law.compute_efficient_frontier(compute, error), expected)


def test_run_list_splits_across_hosts_disjointly_and_completely():
    config = sweep.load_sweep_config(SWEEP_CONFIG)
    runs = run_list.plan_runs(config)
    assert len(runs) == len(config.sizes) * len(config.num_train_steps) * len(config.train_percents)
    assert len({r.name for r in runs}) == len(runs)
    for num_hosts in (1, 2, 3, 4, 7, len(runs) + 2):
        shares = [run_list.host_share(runs, i, num_hosts) for i in range(num_hosts)]
        names = [r.name for share in shares for r in share]
        assert sorted(names) == sorted(r.name for r in runs)  # each run once, none lost
        assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced
    with pytest.raises(ValueError, match=r"`host_index` must be an int in \[0, num_hosts=2\)\. Received: 2"):
        run_list.host_share(runs, 2, 2)
    with pytest.raises(ValueError, match=r"`num_hosts` must be a positive int\. Received: 0"):
        run_list.host_share(runs, 0, 0)


def test_run_config_sets_the_size_the_budget_and_the_data():
    config = sweep.load_sweep_config(SWEEP_CONFIG, ["train_percents=(10, 100)"])
    planned = run_list.PlannedRun("w32_d2", 150, 10)
    assert planned in run_list.plan_runs(config)
    run_config = run_list.run_config(config, planned)
    assert (run_config.model.hidden_size, run_config.model.num_layers, run_config.model.mlp_dim) == (
        32,
        2,
        128,
    )
    assert run_config.model.patch_size == 7  # the base config's, kept
    assert run_config.num_train_steps == 150 and run_config.checkpoint_every == 150
    assert run_config.schedule_kwargs.warmup_steps == 15
    assert run_config.dataset.train_split == "train[:10%]"
    assert "train_split" not in run_list.run_config(config, run_list.PlannedRun("w32_d2", 150, 100)).dataset


@pytest.mark.parametrize(
    "override, match",
    [
        ("fit_on=best", r"`config.fit_on` must be one of \('frontier', 'all'\)\. Received: 'best'"),
        (
            "num_train_steps=(50, 0)",
            r"`config.num_train_steps` must be .* positive ints\. Received: \(50, 0\)",
        ),
        ("train_percents=(150,)", r"`config.train_percents` .* of at most 100\. Received: \(150,\)"),
        ("num_train_steps=(50, 50)", r"must not repeat a value\. Received: \(50, 50\)"),
    ],
)
def test_bad_sweep_configs_are_refused_by_name(override, match):
    with pytest.raises(ValueError, match=match):
        sweep.load_sweep_config(SWEEP_CONFIG, [override])


def test_a_training_config_is_not_a_sweep_config():
    with pytest.raises(
        ValueError, match=r"A sweep config must set base, sizes, train_percents, warmup_fraction, fit_on "
    ):
        sweep.load_sweep_config(SMOKE_CONFIG)
    with pytest.raises(FileNotFoundError, match=r"`--config` must be an existing sweep config file"):
        sweep.load_sweep_config(os.path.join(PROJECT, "configs", "absent.py"))


def test_tiny_sweep_trains_reports_and_skips_finished_runs(tmp_path, capsys):
    sizes = {
        "w8_d1": dict(hidden_size=8, num_heads=1, mlp_dim=32),
        "w16_d1": dict(hidden_size=16, mlp_dim=64),
    }
    argv = [
        "--config", SWEEP_CONFIG, "--workdir", str(tmp_path),
        f"--config.base={SMOKE_CONFIG}", f"--config.sizes={sizes!r}", "--config.num_train_steps=(3,)",
    ]  # fmt: skip
    assert sweep.main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert sorted(r["size"] for r in rows) == ["w16_d1", "w8_d1"]
    for row in rows:
        assert 0.0 <= float(row["test_error"]) <= 1.0 and row["num_train_steps"] == "3"
    by_size = {r["size"]: r for r in rows}
    # The wider model has more parameters and costs more FLOPs per step.
    assert int(by_size["w16_d1"]["num_params"]) > int(by_size["w8_d1"]["num_params"]) > 0
    assert float(by_size["w16_d1"]["training_flops"]) > float(by_size["w8_d1"]["training_flops"]) > 0
    assert (tmp_path / "scaling.png").read_bytes().startswith(b"\x89PNG")
    table = (tmp_path / "results.md").read_text()
    assert "| size | params | steps |" in table and table.count("w8_d1") == table.count("w16_d1") == 1
    # Two points: no law to fit, and the report says why.
    assert json.loads((tmp_path / "fit.json").read_text()) is None
    assert "No power-law fit: Fitting E_inf, A and alpha needs at least 4 points" in capsys.readouterr().out
    finished = {p: os.path.getmtime(p) for p in tmp_path.glob("runs/*/result.json")}
    assert len(finished) == 2

    assert sweep.main(argv) == 0  # again: every run is found finished
    out = capsys.readouterr().out
    assert out.count("finished earlier, skipped") == 2 and "test error" not in out
    assert {p: os.path.getmtime(p) for p in tmp_path.glob("runs/*/result.json")} == finished


def test_each_host_trains_its_share_and_collect_reports_all(tmp_path, monkeypatch):
    config = sweep.load_sweep_config(SWEEP_CONFIG, [f"base={SMOKE_CONFIG}", "num_train_steps=(2, 4)"])
    trained_by = {}

    def fake_train_run(sweep_config, planned, workdir):  # the training itself: tested above
        trained_by.setdefault(planned.name, []).append(host)
        width, steps = sweep_config.sizes[planned.size].hidden_size, planned.num_train_steps
        compute = 1e6 * width**2 * steps
        # A law of compute, except that the widest model is poor after 2 steps.
        error = 0.02 + 0.5 * (compute / 1e9) ** -0.3 + (0.3 if (width, steps) == (128, 2) else 0.0)
        result = dict(
            name=planned.name, size=planned.size, num_train_steps=steps, train_percent=100,
            num_params=width**2, training_flops=compute, test_error=error, wall_seconds=1.0,
        )  # fmt: skip
        os.makedirs(sweep.report.run_dir(workdir, planned), exist_ok=True)
        sweep.report.write_result(workdir, planned, result)
        return result

    monkeypatch.setattr(sweep, "train_run", fake_train_run)
    for host in range(3):
        trained, skipped = sweep.run_sweep(config, str(tmp_path), host_index=host, num_hosts=3)
        assert len(trained) == 4 and not skipped
    names = [r.name for r in run_list.plan_runs(config)]
    assert sorted(trained_by) == sorted(names) and all(len(h) == 1 for h in trained_by.values())
    collected = sweep.report.collect(config, str(tmp_path))
    assert not collected.missing and len(collected.rows) == len(names) == 12
    off_frontier = [r["name"] for r in collected.rows if not r["on_frontier"]]
    assert off_frontier == ["w128_d6_steps2_data100"]
    assert collected.fit.num_points == 11
    np.testing.assert_allclose([collected.fit.e_inf, collected.fit.alpha], [0.02, 0.3], rtol=1e-3)
