"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import labctl
from labctl.errors import UsageError
from labctl.rigs.lock import ChipBusy

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_api_example_runs(capsys):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- api-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README lost its API example"
    exec(compile(block[1], "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "LABCTL,ACB-TWIN" in printed and "% converged" in printed


def test_open_rig_holds_the_chip_and_leaves_it_safe():
    with labctl.open_rig("chip0", size="8x8") as rig:
        with pytest.raises(ChipBusy):
            with labctl.open_rig("chip0", size="8x8"):
                pass
        rig.smu.source_voltage = 0.2
        rig.smu.output_enabled = True
        smu_twin = rig.twin.smu
    assert smu_twin.output is False and smu_twin.voltage == 0.0


def test_open_rig_checks_targets():
    with labctl.open_rig("chip0", size="8x8") as rig:
        with pytest.raises(UsageError, match="window"):
            rig.program([[30.0] * 8] * 8)


def test_readme_lab_toml_example_runs_as_printed(tmp_path):
    """The README's lab.toml: its twin chip calibrates and passes; `rigs` shows each window as configured."""
    import json

    from typer.testing import CliRunner

    from labctl.cli import app

    text = README.read_text(encoding="utf-8")
    block = re.search(r"### Rigs: `lab.toml`.*?```toml\n(.*?)```", text, re.S)
    assert block, "README lost its lab.toml example"
    config = tmp_path / "lab.toml"
    config.write_text(block[1])
    runner = CliRunner()
    rigs = runner.invoke(app, ["rigs", "--config", str(config)], env={"COLUMNS": "200"})
    sim1 = next(line for line in rigs.stdout.splitlines() if "sim1" in line)
    assert "0-40" in sim1  # the rram preset's range, as `sim describe --preset rram` gives it
    done = runner.invoke(app, ["calibrate", "sim1", "--config", str(config), "-q", "--json",
                               "--data", str(tmp_path / "d")])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["protocol"] == "calibrate-rram" and summary["passed"]
