"""The maintenance loop: looks on schedule, figures against the intended matrix, resumable per look."""

from __future__ import annotations

import json
import signal

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import served_twin
from labctl import api
from labctl.cli import app
from labctl_calibration.accuracy import output_scale, relative_l2
from labctl_calibration.defects import drifted_pair_levels
from labctl_calibration.maintain import column_drift_factors, drift_exponent, drift_exponents_by_level
from test_resume import start

runner = CliRunner()


def test_the_drift_exponent_is_read_from_cells_left_alone():
    rng = np.random.default_rng(0)
    g0 = rng.uniform(2, 20, (32, 32))
    law = lambda t: g0 * ((t + 20.0) / 20.0) ** -0.06  # noqa: E731
    stable = rng.random((32, 32)) > 0.2
    now = law(7200.0)
    now[~stable] = 30.0  # refreshed cells say nothing about the law
    assert drift_exponent(law(3600.0), now, stable, 3600.0, 7200.0, 20.0) == pytest.approx(0.06, rel=1e-6)
    assert drift_exponent(law(3600.0), now, np.zeros_like(stable), 3600.0, 7200.0, 20.0) is None


def test_the_drift_exponent_by_level_follows_a_state_dependent_law():
    rng = np.random.default_rng(1)
    levels = rng.choice([0.5, 2.0, 5.0, 10.0, 20.0], size=(64, 64))
    true_nu = np.clip(-0.0155 * np.log(levels / 25.0) + 0.0244, 0.049, 0.1)  # aihwkit's mean law: 0.085 to 0.049
    nu = true_nu + rng.normal(0, 0.01, levels.shape)  # each cell's own exponent about its level's
    law = lambda t: levels * ((t + 20.0) / 20.0) ** -nu  # noqa: E731
    stable = rng.random(levels.shape) > 0.3
    by_level = drift_exponents_by_level(law(3600.0), law(86_400.0), stable, levels, 3600.0, 86_400.0, 20.0)
    for level in (0.5, 2.0, 20.0):
        cells = levels == level
        assert by_level[cells] == pytest.approx(true_nu[cells], abs=0.002)
    assert np.ptp(by_level) > 0.03  # one median would have been one number for every level
    assert drift_exponents_by_level(law(3600.0), law(7200.0), np.zeros_like(stable), levels, 3600.0, 7200.0,
                                    20.0) is None


def test_a_column_factor_is_its_high_cells_not_its_empty_ones():
    # a column of mostly zero weights (0.5 µS) and a few large ones, no drift at all: the empty
    # cells read 0.75 µS (an absolute 0.25 µS off, as write-verify leaves them)
    rng = np.random.default_rng(2)
    intended = np.full((64, 8), 0.5)
    intended[::8] = 20.0
    measured = np.where(intended > 1, intended + rng.normal(0, 0.2, intended.shape), 0.75)
    factor = column_drift_factors(measured, intended, np.ones(intended.shape, dtype=bool))
    assert factor == pytest.approx(1.0, abs=0.02)  # a plain median of G/target said 1.5
    assert np.median(measured / intended, axis=0) == pytest.approx(1.5)
    lone = np.zeros(intended.shape, dtype=bool)
    lone[:, 0] = True  # only column 0 has reference cells: the others take the array's factor
    assert column_drift_factors(measured * 0.8, intended, lone) == pytest.approx(0.8, abs=0.02)


def test_the_partner_of_a_stuck_cell_keeps_the_pairs_difference_on_the_drift():
    aims = np.array([[12.0, 25.0, 2.0, 5.0]])  # pair 0: negative side stuck at 25 µS, partner d + 25 → 12 (clipped)
    stuck = np.array([[False, True, False, False]])
    now = np.array([[10.0, 24.0, 1.5, 4.0]])
    level = drifted_pair_levels(aims, 0.8, now, stuck)
    assert level[0, 0] == pytest.approx(24.0 + 0.8 * (12.0 - 24.0))  # the stuck cell as read, plus the drifted difference
    assert level[0, 2:] == pytest.approx([1.6, 4.0])  # a free pair drifts with its column
    # the pair's difference is the column's drifted difference whatever the stuck cell reads
    assert level[0, 0] - now[0, 1] == pytest.approx(0.8 * (aims[0, 0] - now[0, 1]))


@pytest.mark.parametrize("preset,seed,refresh", [("pcm", 0, True), ("pcm", 3, False), ("rram", 1, True)])
def test_each_look_is_on_schedule_and_its_figure_is_the_chips(tmp_path, preset, seed, refresh):
    """The last look's L2 error is what the twin's true conductances compute (ground truth,
    tests only), through the same re-fitted output scale, within the measured noise."""
    config = tmp_path / "lab.toml"
    config.write_text(f'[chips.keep]\ntwin = {{ preset = "{preset}", seed = {seed}, size = "24x24" }}\n')
    rigs: list = []
    outcome = api.run_maintain("keep", every_s=3600.0, until_s=4 * 3600.0, refresh=refresh, config=config,
                               data=tmp_path / "data", keep_rig=rigs)
    figures = outcome.summary()["steps"]["maintain"]
    times = [tick["t_s"] for tick in figures["ticks"]]
    assert times == pytest.approx([0, 3600, 7200, 10800, 14400], abs=1.0)
    table = pd.read_parquet(tmp_path / "data" / "maintain")
    assert sorted(table["tick"]) == [0, 1, 2, 3, 4]
    assert (table["refreshed"].sum() > 0) == (refresh and figures["refreshed_cells"] > 0)
    if not refresh:
        assert figures["refreshed_cells"] == 0
    # the truth at the end: targets against the true conductances, scale fitted as a deployment would
    twin = rigs[0].twin
    truth = twin.chip.ground_truth().conductance_us[0]
    targets = pd.read_parquet(tmp_path / "data" / "cells").sort_values(["row", "col"])["target_us"].to_numpy()
    targets = targets.reshape(truth.shape)
    volts = np.random.default_rng(5).integers(-127, 128, (400, truth.shape[0])) / 127 * 0.2
    ideal, true_out = volts @ targets, volts @ truth
    slope, intercept = output_scale(ideal, true_out, np.ones(len(volts), bool))
    true_l2 = relative_l2(ideal, true_out, slope, intercept)
    last = figures["ticks"][-1]
    assert last["l2_mean"] == pytest.approx(true_l2, abs=3 * last["noise_floor_l2"] + 0.02)
    assert last["stale_l2_mean"] >= last["l2_mean"] - last["noise_floor_l2"]  # a stale scale is no better
    report = runner.invoke(app, ["report", outcome.run_id, "--data", str(tmp_path / "data"),
                                 "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report" / "maintain.png").stat().st_size > 1000


@pytest.mark.parametrize("args,message", [
    (["--every", "3h", "--until", "1h"], "every_s (10800) exceeds until_s (3600)"),
    (["--every", "0s"], "--every '0s': must be positive"),
    (["--until", "soon"], "--until"),
])
def test_bad_schedules_are_refused_in_one_line_before_anything_runs(tmp_path, args, message):
    result = runner.invoke(app, ["maintain", "--size", "8x8", "--data", str(tmp_path / "d"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "d" / "runs").exists()


def test_a_killed_maintenance_run_resumes_with_every_look_exactly_once(tmp_path):
    """SIGKILL after look 1 is stored but not journalled: the resumed run (the twin served in
    its own process, so the chip outlives labctl) measures look 1 again, keeps look 0 once,
    stays on the original timeline and goes on to the end."""
    data = tmp_path / "data"
    with served_twin(tmp_path, "32x32", "keepR") as config:
        common = ["--config", str(config), "--data", str(data), "-q"]
        killed = start(["maintain", "keepR", "--every", "1h", "--until", "3h", *common], tmp_path,
                       crash_at="maintain-tick-1")
        killed.communicate(timeout=300)
        assert killed.returncode == -signal.SIGKILL
        (run_dir,) = (data / "runs").iterdir()
        assert len(json.loads((run_dir / "maintain.json").read_text())["ticks"]) == 1
        done = start(["maintain", "keepR", "--resume", "--json", *common[:-1]], tmp_path)
        out, err = done.communicate(timeout=300)
    assert done.returncode in (0, 1), err
    summary = json.loads(out)
    assert summary["run_id"] == run_dir.name
    looks = pd.read_parquet(data / "maintain")
    assert sorted(looks["tick"]) == [0, 1, 2, 3]  # none lost, none twice
    assert looks.sort_values("tick")["t_s"].to_numpy() == pytest.approx([0, 3600, 7200, 10800], abs=60.0)
    assert len(pd.read_parquet(data / "cells")) == 32 * 32
