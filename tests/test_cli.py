"""The labctl command line, through typer's runner and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from labctl.cli import app

runner = CliRunner()
SMALL = ["--size", "32x32", "--quiet"]


def labctl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LABCTL_DATA"}
    return subprocess.run(
        [sys.executable, "-m", "labctl", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def runs_in(data: Path) -> list[str]:
    runs = data / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.exists() else []


# ---- typer runner -------------------------------------------------------------------


def test_help_explains_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "calibrate" in result.output and "twin" in result.output
    result = runner.invoke(app, ["calibrate", "--help"])
    assert result.exit_code == 0
    for option in ("--targets", "--protocol", "--data", "--seed", "--size", "--json", "Exit codes"):
        assert option in result.output


def test_calibrate_json_summary(tmp_path):
    result = runner.invoke(app, ["calibrate", "chip0", *SMALL, "--json", "--data", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["cells"] == 1024 and summary["passed"] is True
    assert summary["converged_fraction"] >= 0.93  # the protocol's acceptance (calibrate.toml)
    assert summary["pulses_per_cell_max"] >= summary["pulses_per_cell_mean"] > 0
    assert 0 < summary["error_sigma_us"] < 1.0
    assert runs_in(tmp_path) == [summary["run_id"]]
    manifest = json.loads((tmp_path / "runs" / summary["run_id"] / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["chip_spec"]["geometry"] == [1, 32, 32]
    assert manifest["instruments"]["board"]["idn"].startswith("LABCTL,ACB-TWIN")
    assert manifest["protocol"]["sha256"] and "write_verify" in manifest["protocol"]["content"]


def test_calibrate_table_summary(tmp_path):
    result = runner.invoke(app, ["calibrate", *SMALL, "--data", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for label in ("cells", "converged", "stuck cells found", "pulses per cell", "error σ", "wall time", "data"):
        assert label in result.stdout


def test_the_store_is_readable_by_pandas(tmp_path):
    result = runner.invoke(app, ["calibrate", *SMALL, "--json", "--data", str(tmp_path)])
    run_id = json.loads(result.stdout)["run_id"]
    cells = pd.read_parquet(tmp_path / "cells")
    assert len(cells) == 1024 and set(cells["run"].astype(str)) == {run_id}
    assert set(cells["chip"].astype(str)) == {"chip0"}
    reads = pd.read_parquet(tmp_path / "reads")
    assert len(reads) % 32 == 0  # whole rows
    assert {"health", "noise", "initial", "verify"} <= set(reads["phase"])
    pulses = pd.read_parquet(tmp_path / "pulses")
    assert len(pulses) >= cells["pulses"].sum()  # the read-out reference rows were programmed too
    assert pulses["amplitude_v"].max() <= 3.2
    readout = pd.read_parquet(tmp_path / "readout")
    assert len(readout) == 32 and readout["gain"].between(0.9, 1.1).all()
    mvm = pd.read_parquet(tmp_path / "mvm")
    assert len(mvm) == 64 * 32 and mvm["held_out"].sum() == 32 * 32


def test_seed_changes_the_chip(tmp_path):
    a = json.loads(runner.invoke(app, ["calibrate", *SMALL, "--json", "--seed", "1", "--data", str(tmp_path)]).stdout)
    b = json.loads(runner.invoke(app, ["calibrate", *SMALL, "--json", "--seed", "2", "--data", str(tmp_path)]).stdout)
    assert a["stuck_cells"] != b["stuck_cells"] or a["pulses_per_cell_mean"] != b["pulses_per_cell_mean"]


def test_targets_file(tmp_path):
    targets = np.random.default_rng(0).uniform(1, 20, (32, 32))
    np.save(tmp_path / "t.npy", targets)
    np.savetxt(tmp_path / "t.csv", targets, delimiter=",")
    for name in ("t.npy", "t.csv"):
        result = runner.invoke(app, ["calibrate", *SMALL, "--json", "--targets", str(tmp_path / name),
                                     "--data", str(tmp_path / "d")])
        assert result.exit_code == 0, result.output
    cells = pd.read_parquet(tmp_path / "d" / "cells")
    np.testing.assert_allclose(cells.sort_values(["run", "row", "col"])["target_us"].to_numpy()[:1024],
                               targets.ravel(), rtol=1e-6)


def test_acceptance_failure_exits_1(tmp_path):
    protocol = tmp_path / "strict.toml"
    protocol.write_text('name = "strict"\n[acceptance]\nmax_error_sigma_us = 0.001\n')
    result = runner.invoke(app, ["calibrate", *SMALL, "--protocol", str(protocol), "--data", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "FAIL" in result.stdout
    manifest = json.loads(next((tmp_path / "d" / "runs").glob("*/manifest.json")).read_text())
    assert manifest["status"] == "completed" and manifest["passed"] is False


# ---- bad input: one line, exit 2, no run left behind ---------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_INPUTS = {
    "unknown chip": (["calibrate", "chip9"], "unknown chip 'chip9'"),
    "malformed size": (["calibrate", "--size", "64by64"], "--size '64by64'"),
    "zero size": (["calibrate", "--size", "0x8"], "--size '0x8'"),
    "negative seed": (["calibrate", "--seed", "-1"], "--seed -1"),
    "missing targets": (["calibrate", "--targets", "nope.npy"], "not found"),
    "unsupported targets": (["calibrate", "--targets", "t.txt"], "unsupported type"),
    "missing protocol": (["calibrate", "--protocol", "nope.toml"], "not found"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_arguments(tmp_path, case):
    args, message = BAD_INPUTS[case]
    (tmp_path / "t.txt").write_text("1")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = runner.invoke(app, [*args, "--data", str(tmp_path / "d"), "--quiet"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "targets, message",
    [
        (np.zeros((16, 16)), "does not match the chip's 32x32"),
        (np.full((32, 32), 26.0), "outside the window 0..25"),
        (np.full((32, 32), np.inf), "not finite"),
    ],
)
def test_bad_targets_file(tmp_path, targets, message):
    np.save(tmp_path / "t.npy", targets)
    result = runner.invoke(app, ["calibrate", *SMALL, "--targets", str(tmp_path / "t.npy"),
                                 "--data", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert message in result.stderr and "t.npy" in result.stderr
    assert not (tmp_path / "d").exists()


def test_corrupt_targets_file(tmp_path):
    (tmp_path / "t.npy").write_bytes(b"not numpy")
    result = runner.invoke(app, ["calibrate", *SMALL, "--targets", str(tmp_path / "t.npy"),
                                 "--data", str(tmp_path / "d")])
    assert result.exit_code == 2 and "cannot be read" in result.stderr


@pytest.mark.parametrize(
    "text, message",
    [
        ('name = "x"\n[write_verify]\ntolerance = 0.5\n', "write_verify.tolerance: unknown key"),
        ('name = "x"\n[write_verify]\ntolerance_us = -1\n', "write_verify.tolerance_us"),
        ('name = "x"\n[write_verify]\nreset_max_mv = 3900\n', "exceeds chip0's safe limit reset_max_mv = 3500"),
        ('name = "x"\n[targets]\nlow_us = 30\nhigh_us = 40\n', "outside the window"),
        ('name = "x"\n[acceptance\n', "invalid TOML"),
        ('[targets]\nlevels = 4\n', "name: Field required"),
    ],
)
def test_bad_protocol_file(tmp_path, text, message):
    protocol = write(tmp_path / "p.toml", text)
    result = runner.invoke(app, ["calibrate", *SMALL, "--protocol", str(protocol), "--data", str(tmp_path / "d")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "p.toml" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_unwritable_data_directory(tmp_path):
    blocker = write(tmp_path / "file", "x")
    result = runner.invoke(app, ["calibrate", *SMALL, "--data", str(blocker / "data")])
    assert result.exit_code == 2
    assert "not writable" in result.stderr and str(blocker / "data") in result.stderr


# ---- as a subprocess ----------------------------------------------------------------


def test_subprocess_default_data_directory_and_json(tmp_path):
    done = labctl("calibrate", "chip0", "--size", "32x32", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert Path(summary["data"]) == Path("labdata")
    assert runs_in(tmp_path / "labdata") == [summary["run_id"]]
    assert len(pd.read_parquet(tmp_path / "labdata" / "cells")) == 1024


def test_subprocess_bad_input_is_one_line_and_exit_2(tmp_path):
    done = labctl("calibrate", "chip7", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "labctl: error: unknown chip 'chip7': known chips are chip0, loop0"
    assert not (tmp_path / "labdata").exists()


def test_subprocess_parser_errors_are_one_line_and_exit_2(tmp_path):
    done = labctl("calibrate", "--frobnicate", cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--frobnicate" in done.stderr
    done = labctl("calibrate", "--seed", "many", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_subprocess_help_and_version(tmp_path):
    done = labctl("--help", cwd=tmp_path)
    assert done.returncode == 0 and "calibrate" in done.stdout
    done = labctl("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("labctl ")


def test_help_does_not_import_heavy_libraries(tmp_path):
    code = (
        "import sys\nfrom labctl.cli import app\n"
        "heavy = [m for m in ('numpy', 'pandas', 'pyarrow', 'labctl_sims') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


@pytest.mark.parametrize("preset", ["pcm", "rram", "sram-64"])
def test_sim_describe_prints_the_presets_parameters(preset):
    result = runner.invoke(app, ["sim", "describe", "--preset", preset])
    assert result.exit_code == 0
    for name in ("g_max_us", "set_threshold_mv", "drift_activation_ev", "adc_bits", "thermal_tau_s"):
        assert name in result.stdout
    parsed = json.loads(runner.invoke(app, ["sim", "describe", "--preset", preset, "--json"]).stdout)
    assert parsed["name"] == preset


def test_sim_describe_unknown_preset_is_a_usage_error():
    result = runner.invoke(app, ["sim", "describe", "--preset", "flash"])
    assert result.exit_code == 2 and "unknown preset 'flash'" in result.stderr


def test_an_instrument_failing_mid_run_marks_the_run_failed_and_exits_1(tmp_path, monkeypatch):
    from labctl_calibration import write_verify
    from labctl_drivers import InstrumentError

    def broken(self, targets, **_):
        self.board.read_array()
        raise InstrumentError("board", -310, "System error; ADC fault", "READ:ARR?")

    monkeypatch.setattr(write_verify.WriteVerify, "run", broken)
    result = runner.invoke(app, ["calibrate", *SMALL, "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "ADC fault" in result.stderr
    (run_id,) = runs_in(tmp_path)
    manifest = json.loads((tmp_path / "runs" / run_id / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "ADC fault" in manifest["error"]
    assert not list(tmp_path.rglob(".*.tmp"))


def test_an_error_is_exactly_one_line_with_nothing_after_it():
    """Not even the blank line a progress display leaves when it stops."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "labctl", "calibrate", "nosuch"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("labctl: error: unknown chip 'nosuch'") and done.stderr.count("\n") == 1
    assert done.stderr.endswith("\n")


@pytest.mark.parametrize("command", [["-h"], ["calibrate", "-h"], ["runs", "show", "-h"]])
def test_short_help_and_no_python_type_names(command):
    result = runner.invoke(app, command)
    assert result.exit_code == 0 and "Usage:" in result.stdout
    assert "<list[str]>" not in result.stdout and "<str>" not in result.stdout and "<path>" not in result.stdout


def test_the_acceptance_footer_is_only_on_commands_with_acceptance_limits():
    assert "acceptance" in runner.invoke(app, ["calibrate", "--help"]).stdout
    for command in (["report", "--help"], ["rigs", "--help"], ["export-model", "--help"], ["doctor", "--help"]):
        assert "acceptance" not in runner.invoke(app, command).stdout, command
