"""`labctl doctor`: every instrument judged on its own, nothing changed, no run disturbed."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from labctl.cli import app
from labctl.rigs.lock import chip_lock
from labctl_sims.server import RigServer, TwinRig

runner = CliRunner()


def served_config(path: Path, server: RigServer, **override: str) -> Path:
    resources = {name: server.visa_resource(name) for name in ("board", "smu", "temperature")}
    resources.update(override)
    path.write_text("[chips.rig]\n" + "".join(f'{name} = "{value}"\n' for name, value in resources.items()))
    return path


def test_doctor_refuses_a_chip_a_run_holds_and_names_the_run(tmp_path):
    rig = TwinRig.build("pcm", seed=0, rows=8, cols=8)
    with RigServer(rig, pty=False) as server:
        config = served_config(tmp_path / "lab.toml", server)
        rig.smu.output = True  # as a running calibration has it
        with chip_lock("rig", "labctl calibrate", [server.visa_resource("board")]):
            result = runner.invoke(app, ["doctor", "rig", "--config", str(config)])
        assert result.exit_code == 1
        assert "in use" in result.stderr and "labctl calibrate" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert rig.smu.output  # the run's SMU was not touched


def test_doctor_changes_no_setting(tmp_path):
    rig = TwinRig.build("pcm", seed=0, rows=8, cols=8)
    with RigServer(rig, pty=False) as server:
        config = served_config(tmp_path / "lab.toml", server)
        rig.smu.output, rig.smu.voltage = True, 0.2
        result = runner.invoke(app, ["doctor", "rig", "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert rig.smu.output and rig.smu.voltage == 0.2


def test_doctor_names_the_failing_instrument_and_checks_the_others(tmp_path):
    rig = TwinRig.build("pcm", seed=0, rows=8, cols=8)
    with RigServer(rig, pty=False) as server:
        config = served_config(tmp_path / "lab.toml", server, smu="TCPIP::127.0.0.1::1::SOCKET")
        result = runner.invoke(app, ["doctor", "rig", "--config", str(config)], env={"COLUMNS": "250"})
    assert result.exit_code == 1
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 4}
    assert "FAIL" in rows["smu"] and "cannot connect" in rows["smu"]
    assert "ok" in rows["board"] and "LABCTL,ACB-TWIN" in rows["board"]
    assert "ok" in rows["temperature"] and "LSCI" in rows["temperature"]
