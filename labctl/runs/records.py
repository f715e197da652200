"""Calibration records: what a calibration learned about a chip, reused by later runs.

A record lives with its run (``runs/<id>/calibration.json``): per-column read-out gain
and offset, the stuck map, the MVM correction, when and at what temperature. The
conductances it achieved are the run's ``cells`` table. A later run on the same chip
starts from the newest record unless asked for a fresh calibration.

"The same chip" is the physical chip, not the name in ``lab.toml``: a record carries
the board's identity (maker, model and serial of ``*IDN?``; a twin's serial names its
preset, seed and size), and a record of another identity is never reused, even under
the same name: its stuck map and read-out belong to other silicon.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.store.run import Run, RunStore

RECORD_NAME = "calibration.json"
RECORD_TEMPERATURE_TOLERANCE_K = 2.0  # a read-out and a stuck map taken hotter or colder than this describe another state
log = logging.getLogger("labctl.runs.records")


@dataclass(frozen=True)
class CalibrationRecord:
    chip: str
    identity: str  # the board's maker,model,serial: which physical chip
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
            "identity": self.identity,
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
    def from_json(cls, data: Any) -> CalibrationRecord:
        """A record as stored; ``RecordError`` naming the first thing wrong with it."""
        try:
            rows, cols = (int(side) for side in data["geometry"])
            if rows < 1 or cols < 1:
                raise RecordError(f"geometry {data['geometry']!r}")
            gain = _finite(data["readout"]["gain"], (cols,), "readout gain")
            if (gain <= 0).any():
                raise RecordError("readout gain not positive")
            offset = _finite(data["readout"]["offset_lsb"], (cols,), "readout offset")
            stuck = np.zeros((rows, cols), dtype=bool)
            for r, c in data["stuck"]:
                if not (isinstance(r, int) and isinstance(c, int) and 0 <= r < rows and 0 <= c < cols):
                    raise RecordError(f"stuck cell {[r, c]!r} outside the {rows}x{cols} array")
                stuck[r, c] = True
            mvm = data.get("mvm_correction")
            temperature = float(data["temperature_k"])
            if not np.isfinite(temperature) or temperature <= 0:
                raise RecordError(f"temperature {data['temperature_k']!r}")
            if "identity" not in data:
                raise RecordError("it names no chip identity (written before records were keyed by the board's "
                                  "identity)")
            if not all(isinstance(data[key], str) for key in ("chip", "identity", "run_id", "created_utc")):
                raise RecordError("chip, identity, run_id and created_utc must be text")
            return cls(
                chip=data["chip"], identity=data["identity"], run_id=data["run_id"], created_utc=data["created_utc"],
                temperature_k=temperature,
                geometry=(rows, cols), readout_gain=gain, readout_offset_lsb=offset, stuck=stuck,
                mvm_slope=None if mvm is None else _finite(mvm["slope"], (cols,), "MVM slope"),
                mvm_intercept_ua=None if mvm is None else _finite(mvm["intercept_ua"], (cols,), "MVM intercept"),
            )
        except RecordError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise RecordError(f"{type(err).__name__}: {err}") from None


class RecordError(ValueError):
    """A stored record that cannot be trusted (edited, corrupt, or from a broken writer)."""


def _finite(values: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.shape != shape:
        raise RecordError(f"{what} has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise RecordError(f"{what} is not finite")
    return array


def save_record(run: Run, record: CalibrationRecord) -> None:
    run.write_json(RECORD_NAME, record.as_json())


def latest_record(store: RunStore, chip: str, geometry: tuple[int, int], identity: str,
                  temperature_k: float) -> CalibrationRecord | None:
    """The newest valid record of a run on this physical chip (name, board identity and
    geometry), taken within ``RECORD_TEMPERATURE_TOLERANCE_K`` of the temperature the chip
    will be measured at, by a run that passed its acceptance. A record that fails
    validation is skipped with a warning and the one before it is used: one bad file must
    not stop every later calibration. Records of another identity under this name, or of
    another temperature, are skipped with one warning each kind."""
    fs = store.fs
    other: list[tuple[str, str]] = []
    elsewhere: list[CalibrationRecord] = []
    found = None
    for run_id, manifest in store.runs_newest_first(chip):
        if manifest.get("status") != "completed" or manifest.get("passed") is False:
            continue  # a failed run's record is not one to build on
        raw = fs.read(fs.path("runs", run_id, RECORD_NAME))
        if raw is None:
            continue
        try:
            data = json.loads(raw)
            if data.get("chip") != chip:
                continue
            record = CalibrationRecord.from_json(data)
        except (ValueError, AttributeError) as err:
            log.warning("calibration record of run %s skipped, it cannot be used: %s", run_id, err)
            continue
        if record.identity != identity:
            other.append((run_id, record.identity))
            continue
        if record.geometry != tuple(geometry):
            continue
        if abs(record.temperature_k - temperature_k) > RECORD_TEMPERATURE_TOLERANCE_K:
            elsewhere.append(record)
            continue
        found = record
        break
    if other:
        newest_run, newest_identity = other[0]
        log.warning("%d calibration record(s) of %s belong to another chip and are not reused (newest: run %s, "
                    "identity %s; this chip is %s)", len(other), chip, newest_run, newest_identity, identity)
    if elsewhere:
        log.warning("%d calibration record(s) of %s were taken at another temperature and are not reused (newest: "
                    "run %s at %.1f K; this run measures at %.1f K)", len(elsewhere), chip, elsewhere[0].run_id,
                    elsewhere[0].temperature_k, temperature_k)
    return found


def chip_identity(maker: str, model: str, serial: str) -> str:
    """What names a physical chip: the board's identity without its firmware version,
    which an update changes while the silicon stays."""
    return f"{maker},{model},{serial}"
