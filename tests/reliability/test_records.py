"""Which calibration record a run builds on: the newest valid one of a run that passed,
newest by the chip's run sequence, not by a clock that may step back."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_hostile_input import labctl_main

import labctl.store.run as store_run

ARGS = ["calibrate", "--size", "16x16", "-q", "--json"]  # at 8x8 the self-consistency acceptance (3 % FS) is a coin toss


def calibrate(data: Path, *extra: str) -> tuple[int, dict, str]:
    code, out, err = labctl_main([*ARGS, "--data", str(data), *extra])
    assert code in (0, 1), err
    run_id = json.loads(out)["run_id"]
    manifest = json.loads((data / "runs" / run_id / "manifest.json").read_text())
    return code, manifest, err


def record_path(data: Path, run_id: str) -> Path:
    return data / "runs" / run_id / "calibration.json"


@pytest.mark.parametrize("tamper", [
    lambda r: r["readout"].update(gain=[math.nan] * len(r["readout"]["gain"])),
    lambda r: r.update(stuck=[[999, 0]]),
    lambda r: r.update(geometry="8x8"),
    lambda r: r["readout"].update(offset_lsb=[0.0]),
    lambda r: r.pop("readout"),
])
def test_a_corrupt_record_is_skipped_with_a_warning_and_the_one_before_used(tmp_path, tamper):
    data = tmp_path / "d"
    _, first, _ = calibrate(data)
    _, second, _ = calibrate(data)
    assert second["starting_from_record"] == first["run_id"]
    path = record_path(data, second["run_id"])
    record = json.loads(path.read_text())
    tamper(record)
    path.write_text(json.dumps(record, allow_nan=True))
    code, third, err = calibrate(data)
    assert third["starting_from_record"] == first["run_id"]
    assert f"labctl: warning: calibration record of run {second['run_id']} skipped" in err


def test_a_record_of_a_run_that_missed_its_acceptance_is_not_built_on(tmp_path):
    data = tmp_path / "d"
    _, good, _ = calibrate(data)
    strict = tmp_path / "strict.toml"
    builtin = (Path(__file__).parents[2] / "protocols" / "calibrate.toml").read_text()
    line = next(line for line in builtin.splitlines() if line.startswith("max_error_sigma_us"))
    strict.write_text(builtin.replace(line, "max_error_sigma_us = 0.000001"))
    code, failed, _ = calibrate(data, "--protocol", str(strict))
    assert code == 1 and failed["passed"] is False
    assert record_path(data, good["run_id"]).exists()
    assert not record_path(data, failed["run_id"]).exists()  # nothing a later run could mistake for a record
    _, after, _ = calibrate(data)
    assert after["starting_from_record"] == good["run_id"]


def test_the_newest_run_is_the_last_started_even_after_the_clock_stepped_back(tmp_path, monkeypatch):
    data = tmp_path / "d"
    _, first, _ = calibrate(data)
    real = store_run.new_run_id
    monkeypatch.setattr(store_run, "new_run_id", lambda now=None: real(datetime.now(UTC) - timedelta(days=365)))
    _, stepped_back, _ = calibrate(data)  # its id sorts before the first run's
    assert stepped_back["run_id"] < first["run_id"]
    monkeypatch.setattr(store_run, "new_run_id", real)
    _, third, _ = calibrate(data)
    assert third["starting_from_record"] == stepped_back["run_id"]
    assert [first["sequence"], stepped_back["sequence"], third["sequence"]] == [1, 2, 3]


def test_a_record_belongs_to_one_physical_chip_not_to_a_name(tmp_path):
    """Two twins under one name (other seed): neither builds on the other's stuck map or read-out."""
    data = tmp_path / "d"
    _, seed3, _ = calibrate(data, "--seed", "3")
    code, seed0, err = calibrate(data)
    assert seed0["starting_from_record"] is None
    assert seed0["chip_identity"] != seed3["chip_identity"]
    assert "belong to another chip and are not reused" in err and seed3["run_id"] in err
    _, seed0_again, _ = calibrate(data)
    assert seed0_again["starting_from_record"] == seed0["run_id"]
    _, seed3_again, _ = calibrate(data, "--seed", "3")
    assert seed3_again["starting_from_record"] == seed3["run_id"]


def test_a_record_without_an_identity_is_not_reused(tmp_path):
    data = tmp_path / "d"
    _, first, _ = calibrate(data)
    path = record_path(data, first["run_id"])
    record = json.loads(path.read_text())
    record.pop("identity")
    path.write_text(json.dumps(record))
    _, second, err = calibrate(data)
    assert second["starting_from_record"] is None
    assert "names no chip identity" in err
