"""Several chips at once: parallel runs, each with its own lock and run; the exit code reflects all."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from labctl.cli import app

runner = CliRunner()


def lab(tmp_path, extra: str = "") -> str:
    config = tmp_path / "lab.toml"
    config.write_text('[chips.chip1]\ntwin = { preset = "pcm", seed = 1, size = "32x32" }\n'
                      '[chips.chip2]\ntwin = { preset = "pcm", seed = 2, size = "32x32" }\n' + extra)
    return str(config)


def test_two_chips_in_parallel_give_two_runs(tmp_path):
    config = lab(tmp_path)
    result = runner.invoke(app, ["calibrate", "chip1", "chip2", "--config", config, "--json", "-q",
                                 "--data", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert sorted(run["chip"] for run in summary["runs"]) == ["chip1", "chip2"] and summary["errors"] == {}
    assert len(list((tmp_path / "d" / "runs").iterdir())) == 2


def test_one_failing_chip_does_not_stop_the_others(tmp_path):
    config = lab(tmp_path, '[chips.broken]\nboard = "/dev/does-not-exist"\n')
    result = runner.invoke(app, ["calibrate", "--all", "--config", config, "--json", "-q", "--size", "32x32",
                                 "--data", str(tmp_path / "d")])
    # --size is for in-process twins only: the broken chip's use of it is bad input (2), the rest run
    summary = json.loads(result.stdout)
    # --all is the chips lab.toml names: not the built-in chip0 it does not mention
    assert sorted(run["chip"] for run in summary["runs"]) == ["chip1", "chip2"]
    assert set(summary["errors"]) == {"broken"} and result.exit_code == 2
    assert "labctl: error: broken:" in result.stderr


def test_a_failing_instrument_makes_the_exit_code_1(tmp_path):
    config = lab(tmp_path, '[chips.broken]\nboard = "/dev/does-not-exist"\n')
    result = runner.invoke(app, ["calibrate", "chip1", "broken", "--config", config, "-q",
                                 "--data", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "chip1" in result.stdout and "broken" in result.stderr
