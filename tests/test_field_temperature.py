"""A rig whose temperature controller is a QCoDeS or PyMeasure class: drift runs at its set
points, the chip's temperature range is enforced before the framework sends anything, and
doctor names the driver."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from labctl import api
from labctl.cli import app
from labctl_sims.server import RigServer, TwinRig

DRIFT = {"duration_s": 600.0, "reads": 3, "temperatures_k": (300.0, 325.0)}
DRIVERS = {
    "pymeasure:LakeShore3xx": ('{ visa_library = "@py", read_termination = "\\r\\n", write_termination = "\\r\\n", '
                               "timeout = 3000 }", "pymeasure"),
    "qcodes:LakeshoreModel335": ('{ visalib = "@py", terminator = "\\r\\n", timeout = 3 }', "qcodes"),
}


def field_config(tmp_path: Path, server: RigServer, driver: str, options: str) -> Path:
    config = tmp_path / "lab.toml"
    config.write_text(f'[chips.field]\nboard = "{server.visa_resource("board")}"\n'
                      f'smu = "{server.visa_resource("smu")}"\n'
                      f'temperature = {{ driver = "{driver}", resource = "{server.visa_resource("temperature")}", '
                      f"options = {options} }}\n"
                      "[chips.field.limits]\ntemperature_min_k = 280\ntemperature_max_k = 340\n")
    return config


@pytest.mark.parametrize("driver", DRIVERS)
def test_drift_runs_at_the_set_points_of_a_field_temperature_controller(tmp_path, driver):
    options, framework = DRIVERS[driver]
    pytest.importorskip(framework)
    rig = TwinRig.build("pcm", seed=3, rows=16, cols=16)
    with RigServer(rig, pty=False) as server:
        config, data = field_config(tmp_path, server, driver, options), tmp_path / "data"
        outcome = api.run_drift("field", config=config, data=data, **DRIFT)
        assert rig.chip.thermal.final_set_point_k == 325.0
        assert rig.chip.thermal.heater_range == 0  # the drift protocol switches the heater off on exit
        doctor = CliRunner().invoke(app, ["doctor", "field", "--config", str(config)])
    reads = pd.read_parquet(data / "reads", filters=[("run", "==", outcome.run_id)], columns=["phase", "temperature_k"])
    found = reads[reads["phase"].str.startswith("drift-")].groupby("phase")["temperature_k"].median()
    assert found["drift-300K"] == pytest.approx(300.0, abs=0.5)
    assert found["drift-325K"] == pytest.approx(325.0, abs=0.5)
    assert outcome.steps["settle"]["controller"] is True
    row = next(line for line in doctor.output.splitlines() if line.startswith("│ temperature"))
    assert doctor.exit_code == 0 and driver[:12] in row and "LSCI" in row, doctor.output


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_set_point_beyond_the_chips_range_is_refused_before_the_framework_sends_it(driver):
    from labctl_drivers.errors import LimitError
    from labctl_drivers.field import open_field_instrument
    from labctl_drivers.safety import SafeOperatingArea

    options, framework = DRIVERS[driver]
    pytest.importorskip(framework)
    rig = TwinRig.build("pcm", seed=0, rows=4, cols=4)
    soa = SafeOperatingArea(temperature_min_k=280.0, temperature_max_k=340.0)
    kwargs = {"visa_library" if framework == "pymeasure" else "visalib": "@py"}
    if framework == "pymeasure":
        kwargs.update(read_termination="\r\n", write_termination="\r\n")
    else:
        kwargs.update(terminator="\r\n")
    with RigServer(rig, pty=False) as server:
        tc = open_field_instrument("temperature", driver, server.visa_resource("temperature"), kwargs, soa=soa)
        try:
            tc.set_point_k = 310.0
            tc.heater_range = 2
            assert tc.set_point_k == pytest.approx(310.0) and tc.heater_range == 2
            with pytest.raises(LimitError, match="set point 400 K outside the safe range 280..340 K"):
                tc.set_point_k = 400.0
            with pytest.raises(LimitError, match="heater range 5"):
                tc.heater_range = 5
            assert rig.chip.thermal.final_set_point_k == 310.0 and rig.chip.thermal.heater_range == 2
            tc.heater_off()
            assert rig.chip.thermal.heater_range == 0
            # the sensor reads within its noise (σ 0.05 K) of the chip: 5 σ, not two noisy reads within 1.4 σ
            assert tc.temperature_k == pytest.approx(rig.chip.temperature_k, abs=5 * rig.chip.params.sensor_noise_k)
        finally:
            tc.close()


def test_labctls_own_335_registered_as_an_instrument_driver_runs_a_drift(tmp_path):
    rig = TwinRig.build("pcm", seed=4, rows=16, cols=16)
    with RigServer(rig, pty=False) as server:
        config = tmp_path / "lab.toml"
        config.write_text(f'[chips.field]\nboard = "{server.visa_resource("board")}"\n'
                          f'smu = "{server.visa_resource("smu")}"\n'
                          f'temperature = {{ driver = "lakeshore335", resource = "{server.visa_resource("temperature")}" }}\n')
        outcome = api.run_drift("field", config=config, data=tmp_path / "data", **DRIFT)
    assert outcome.steps["settle"]["controller"] is True and rig.chip.thermal.final_set_point_k == 325.0


def test_an_smu_named_as_the_temperature_controller_is_one_clear_line(tmp_path):
    rig = TwinRig.build("pcm", seed=0, rows=4, cols=4)
    with RigServer(rig, pty=False) as server:
        config = tmp_path / "lab.toml"
        config.write_text(f'[chips.field]\nboard = "{server.visa_resource("board")}"\n'
                          f'temperature = {{ driver = "keithley2450", resource = "{server.visa_resource("smu")}" }}\n')
        result = CliRunner().invoke(app, ["calibrate", "field", "--config", str(config), "-q",
                                          "--data", str(tmp_path / "data")])
    assert result.exit_code != 0
    assert "keithley2450" in result.output and "not a temperature controller" in result.output, result.output
