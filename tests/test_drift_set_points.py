"""A drift segment is measured at its temperature or not at all.

An earlier run may leave the controller's heater off; a set point may be out of the
heater's reach. Either way, reads labelled 330 K must not be taken at 300 K.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from labctl import api
from labctl.errors import RunFailed
from labctl_sims.server import RigServer, TwinRig

DRIFT = {"duration_s": 600.0, "reads": 4, "temperatures_k": (300.0, 330.0)}


def served_config(tmp_path: Path, server: RigServer) -> Path:
    config = tmp_path / "lab.toml"
    config.write_text("[chips.rig2]\n" + "".join(
        f'{name} = "{server.visa_resource(name)}"\n' for name in ("board", "smu", "temperature")))
    return config


def segment_temperatures(data: Path, run_id: str) -> dict[str, float]:
    reads = pd.read_parquet(data / "reads", filters=[("run", "==", run_id)], columns=["phase", "temperature_k"])
    drift = reads[reads["phase"].str.startswith("drift-")]
    return drift.groupby("phase")["temperature_k"].median().to_dict()


def test_a_second_drift_run_turns_the_heater_back_on(tmp_path):
    """The built-in drift protocol switches the heater off on exit; the next run must heat again."""
    rig = TwinRig.build("pcm", seed=0, rows=16, cols=16)
    with RigServer(rig, pty=False) as server:
        config, data = served_config(tmp_path, server), tmp_path / "data"
        first = api.run_drift("rig2", config=config, data=data, **DRIFT)
        assert rig.chip.thermal.heater_range == 0  # left off, as the protocol asks
        second = api.run_drift("rig2", config=config, data=data, **DRIFT)
    for outcome in (first, second):
        found = segment_temperatures(data, outcome.run_id)
        assert found["drift-300K"] == pytest.approx(300.0, abs=0.5)
        assert found["drift-330K"] == pytest.approx(330.0, abs=0.5)
        # programmed at the reference temperature, not at the 330 K the last run left behind
        assert outcome.steps["settle"]["measured_k"] == pytest.approx(300.0, abs=0.5)
        assert outcome.temperature_k == pytest.approx(300.0, abs=0.5)
        programming = pd.read_parquet(data / "reads", filters=[("run", "==", outcome.run_id)],
                                      columns=["phase", "temperature_k"])
        assert programming[programming["phase"] == "verify"]["temperature_k"].max() < 300.6


def test_a_set_point_out_of_the_heaters_reach_fails_the_run_with_the_reason(tmp_path):
    protocol = tmp_path / "drift.toml"
    builtin = (Path(__file__).parents[1] / "protocols" / "drift.toml").read_text()
    protocol.write_text(builtin.replace("heater_range = 3", "heater_range = 1")  # low: 30 K above ambient at most
                        .replace("settle_timeout_s = 7200.0", "settle_timeout_s = 600.0"))
    data = tmp_path / "data"
    with pytest.raises(RunFailed, match=r"reached 3\d\d\.\d\d K, not 360 K") as failure:
        api.run_drift("chip0", size="16x16", protocol=protocol, data=data,
                      duration_s=600.0, reads=4, temperatures_k=(300.0, 360.0))
    assert failure.value.exit_code == 1
    run_id = str(failure.value).split()[1]
    manifest = json.loads((data / "runs" / run_id / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "not 360 K" in manifest["error"]
    assert "drift-360K" not in segment_temperatures(data, run_id)  # nothing measured at the wrong temperature
    assert not (data / "runs" / run_id / "calibration.json").exists()


def test_a_record_taken_at_another_temperature_is_not_reused(tmp_path):
    """A drift run leaves the chip at 330 K; a calibration started then must not apply the
    read-out and stuck map measured at 300 K."""
    rig = TwinRig.build("pcm", seed=0, rows=16, cols=16)
    with RigServer(rig, pty=False) as server:
        config, data = served_config(tmp_path, server), tmp_path / "data"
        cool = api.calibrate("rig2", config=config, data=data)
        warm = api.run_drift("rig2", config=config, data=data, **DRIFT)  # settles at 300 K first: reuses the record
        hot = api.calibrate("rig2", config=config, data=data)  # the chip is still near 330 K
    manifests = {run.run_id: json.loads((data / "runs" / run.run_id / "manifest.json").read_text())
                 for run in (cool, warm, hot)}
    assert manifests[warm.run_id]["starting_from_record"] == cool.run_id
    assert hot.temperature_k > 325
    assert manifests[hot.run_id]["starting_from_record"] is None
    assert hot.readout_source == f"calibrated in run {hot.run_id}"  # at the temperature it measures at
