"""Boards from the ``labctl.boards`` entry point group: a driver package outside labctl
(``tests/plugins/example-board``, installed by the test command) and the ArC TWO driver on its
stand-in, each calibrated from lab.toml through the same calibration code as the SCPI twin."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import EntryPoint

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl_drivers.contract import BoardContract
from labctl_drivers.errors import DriverError
from labctl_drivers.plugins import board_drivers, open_board
from labctl_drivers.safety import SafeOperatingArea

EXAMPLE_MISSING = ("the example board package is not installed: pip install ./tests/plugins/example-board "
                   "(README's test command does)")


def example_installed() -> bool:
    return "example" in board_drivers()


def test_the_external_package_registers_its_board_and_labctl_lists_it():
    assert example_installed(), EXAMPLE_MISSING
    result = CliRunner().invoke(app, ["rigs", "--drivers"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "example" in line)
    assert "labctl_example_board:open_board" in line and "labctl-example-board 0.1.0" in line
    for own in ("scpi", "arc2", "arc2-twin"):
        assert f" {own} " in result.output


def test_labctl_calibrate_uses_the_external_board_from_lab_toml(tmp_path):
    assert example_installed(), EXAMPLE_MISSING
    (tmp_path / "lab.toml").write_text('[chips.ex]\nboard = { driver = "example", options = { seed = 3 } }\n')
    done = subprocess.run([sys.executable, "-m", "labctl", "calibrate", "ex", "--data", str(tmp_path / "data"),
                           "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["cells"] == 24 * 24 and summary["converged_fraction"] >= 0.93
    assert summary["steps"]["mvm"]["cost"]["board_s"] > 0  # the board's MVM path was used
    manifest = json.loads(next((tmp_path / "data").rglob("manifest.json")).read_text())
    assert "Example Lab" in json.dumps(manifest)


class TestTheExternalBoardKeepsTheContract(BoardContract):
    @pytest.fixture
    def board(self):
        assert example_installed(), EXAMPLE_MISSING
        board = open_board("example", resource=None, options={"seed": 4}, soa=SafeOperatingArea(), timeout_s=2.0)
        yield board
        board.close()

    @pytest.fixture
    def instrument_calls(self, board):
        return lambda: board.calls

    @pytest.fixture
    def at_rest(self, board):
        return lambda: not board.driven

    def put_to_work(self, board) -> None:
        board.mvm(np.full(board.geometry().rows, 100))


def test_labctl_calibrate_runs_on_the_arc2_stand_in_and_programs_the_right_cells(tmp_path):
    """The default protocol end to end through the ArC TWO driver; the conductances the
    stand-in's chip holds (its ground truth) are the targets, cell by cell: a wrong channel
    map or sign would program other cells than the ones read back."""
    pytest.importorskip("pyarc2")
    from labctl.api import calibrate

    config = tmp_path / "lab.toml"
    config.write_text('[chips.arc]\nboard = { driver = "arc2-twin", options = { preset = "pcm", seed = 0 } }\n')
    kept = []
    summary = calibrate("arc", data=tmp_path / "data", config=config, keep_rig=kept).summary()
    assert summary["passed"], summary["acceptance"]
    assert summary["cells"] == 32 * 32 and summary["converged_fraction"] >= 0.95
    assert "AMMETER" in summary["steps"]["readout"]["source"]
    rig = kept[0]
    truth = rig.board.standin.chip.ground_truth()
    last = pd.read_parquet(tmp_path / "data" / "cells")
    ok = last["converged"].to_numpy() & ~last["stuck"].to_numpy()
    g = truth.conductance_us[0][last["row"].to_numpy(), last["col"].to_numpy()]
    error = g[ok] - last["target_us"].to_numpy()[ok]
    assert np.sqrt(np.mean(error ** 2)) < 1.5, "the stand-in's cells are not where the driver says it put them"
    assert rig.board.standin.at_rest()  # left grounded at exit


def test_a_board_table_naming_no_installed_driver_is_one_line_and_exit_2(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text('[chips.x]\nboard = { driver = "nosuch" }\n')
    result = CliRunner().invoke(app, ["calibrate", "x", "--config", str(config), "--data", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "no board driver 'nosuch' is installed" in result.output and "arc2" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_a_driver_that_fails_to_open_is_named_and_nothing_is_run(tmp_path):
    pytest.importorskip("pyarc2")
    config = tmp_path / "lab.toml"
    config.write_text('[chips.x]\nboard = { driver = "arc2-twin", options = { colour = "red" } }\n'
                      '[chips.y]\nboard = { driver = "arc2", options = { port = 0, firmware = "fw.bin" } }\n')
    for chip, words in (("x", "unknown option(s) colour"), ("y", "no ArC TWO at port 0")):
        result = CliRunner().invoke(app, ["calibrate", chip, "--config", str(config), "--data", str(tmp_path / "d")])
        assert result.exit_code != 0 and words in result.output, result.output


def test_a_factory_returning_something_else_than_a_board_is_refused_with_what_it_lacks(monkeypatch):
    point = EntryPoint("notaboard", "builtins:dict", "labctl.boards")
    monkeypatch.setattr("labctl_drivers.plugins.board_drivers", lambda: {"notaboard": point})
    with pytest.raises(DriverError, match="without .*read_array.*does not implement"):
        open_board("notaboard", resource=None, options={}, soa=SafeOperatingArea(), timeout_s=1.0)
