"""Calibration records: what a calibration learned about a chip, reused by later runs.

A record lives with its run (``runs/<id>/calibration.json``): per-column read-out gain
and offset, the stuck map, the MVM correction, when and at what temperature. The
conductances it achieved are the run's ``cells`` table. A later run on the same chip
(and geometry) starts from the newest record unless asked for a fresh calibration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.store.run import Run, RunStore

RECORD_NAME = "calibration.json"


@dataclass(frozen=True)
class CalibrationRecord:
    chip: str
    run_id: str
    created_utc: str
    temperature_k: float
    geometry: tuple[int, int]
    readout_gain: np.ndarray
    readout_offset_lsb: np.ndarray
    stuck: np.ndarray  # bool map
    mvm_slope: np.ndarray | None
    mvm_intercept_ua: np.ndarray | None

    def as_json(self) -> dict[str, Any]:
        return {
            "chip": self.chip,
            "run_id": self.run_id,
            "created_utc": self.created_utc,
            "temperature_k": self.temperature_k,
            "geometry": list(self.geometry),
            "readout": {"gain": self.readout_gain.tolist(), "offset_lsb": self.readout_offset_lsb.tolist()},
            "stuck": np.argwhere(self.stuck).tolist(),
            "mvm_correction": None if self.mvm_slope is None else {
                "slope": self.mvm_slope.tolist(), "intercept_ua": self.mvm_intercept_ua.tolist()},
            "achieved_conductances": f"cells table, run={self.run_id}",
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CalibrationRecord:
        rows, cols = data["geometry"]
        stuck = np.zeros((rows, cols), dtype=bool)
        for r, c in data["stuck"]:
            stuck[r, c] = True
        mvm = data.get("mvm_correction")
        return cls(
            chip=data["chip"], run_id=data["run_id"], created_utc=data["created_utc"],
            temperature_k=data["temperature_k"], geometry=(rows, cols),
            readout_gain=np.array(data["readout"]["gain"]), readout_offset_lsb=np.array(data["readout"]["offset_lsb"]),
            stuck=stuck,
            mvm_slope=None if mvm is None else np.array(mvm["slope"]),
            mvm_intercept_ua=None if mvm is None else np.array(mvm["intercept_ua"]),
        )


def save_record(run: Run, record: CalibrationRecord) -> None:
    run.write_json(RECORD_NAME, record.as_json())


def latest_record(store: RunStore, chip: str, geometry: tuple[int, int]) -> CalibrationRecord | None:
    """The newest record of a completed run on this chip and geometry, if any."""
    fs = store.fs
    for run_id in reversed(fs.listdir(fs.path("runs"))):  # run ids sort by start time
        record, manifest = fs.read(fs.path("runs", run_id, RECORD_NAME)), fs.read(fs.path("runs", run_id, "manifest.json"))
        if record is None or manifest is None:
            continue
        try:
            meta, data = json.loads(manifest), json.loads(record)
        except ValueError:
            continue
        if meta.get("status") == "completed" and data.get("chip") == chip and tuple(data["geometry"]) == geometry:
            return CalibrationRecord.from_json(data)
    return None
