"""Read-out calibration: each column's ADC gain and offset, against the SMU as the reference.

A few reference rows are programmed to levels spread over the window (roughly: any
spread will do, the SMU says exactly where each cell ended up). For each reference
row, the board reads the whole row (many averaged reads), the SMU measures every
cell of the row in turn through the probe port at the read voltage, and the board
reads the row again; each cell's board reading is interpolated to the moment the
SMU measured it, so the two see the same conductance even while it drifts. Per
column, ``code = a · G + b`` is fitted by least squares with one pass of outlier
rejection (median absolute deviation); ``gain = a · LSB / V`` and ``offset = b``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labctl_calibration.readout import Readout
from labctl_calibration.write_verify import WriteVerify, WriteVerifyObserver, WriteVerifyParams
from labctl_drivers.board import Board
from labctl_drivers.errors import DriverError
from labctl_drivers.smu import Keithley2450


class ReadoutCalibrationParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    levels_us: tuple[Annotated[float, Field(ge=0, le=1000)], ...] = Field(
        tuple(np.round(np.linspace(0.5, 22.0, 16), 2)), min_length=2, max_length=4096)  # a line needs two
    reference_tolerance_us: float = Field(1.0, gt=0)
    read_voltage: float = Field(0.2, gt=0, le=0.3)
    averaging: int = Field(256, ge=1, le=256)
    repeats: int = Field(64, ge=1, le=1024)  # averaged row reads before and after each row's SMU pass
    nplc: float = Field(1.0, ge=0.01, le=10)
    current_limit_a: float = Field(1e-4, gt=0)
    outlier_mads: float = Field(5.0, gt=0)


@dataclass(frozen=True)
class ReadoutCalibration:
    gain: np.ndarray  # per column
    offset_lsb: np.ndarray  # per column
    residual_rms_lsb: np.ndarray  # per column, of the fit
    reference_rows: np.ndarray
    reference_us: np.ndarray  # (levels, cols): the SMU's conductance of each reference cell
    codes: np.ndarray  # (levels, cols): the board's mean code of the same cell

    def readout(self, lsb_ua: float, read_voltage: float) -> Readout:
        return Readout(lsb_ua, read_voltage, gain=self.gain, offset=self.offset_lsb, calibrated=True)


def fit_columns(conductance_us: np.ndarray, codes: np.ndarray, outlier_mads: float) -> tuple[np.ndarray, ...]:
    """Per-column ``codes = a·G + b`` (columns along axis 1); returns a, b and the residual RMS."""
    slopes, intercepts, rms = [], [], []
    for x, y in zip(conductance_us.T, codes.T):
        keep = np.isfinite(x) & np.isfinite(y)
        a, b = np.polyfit(x[keep], y[keep], 1)
        residual = y - (a * x + b)
        mad = np.median(np.abs(residual[keep] - np.median(residual[keep])))
        inliers = keep & (np.abs(residual) <= outlier_mads * 1.4826 * mad)
        if mad > 0 and inliers.sum() >= 2:  # a line needs two points: rejection never leaves fewer
            keep = inliers
            a, b = np.polyfit(x[keep], y[keep], 1)
            residual = y - (a * x + b)
        slopes.append(a)
        intercepts.append(b)
        rms.append(float(np.sqrt(np.mean(residual[keep] ** 2))))
    return np.array(slopes), np.array(intercepts), np.array(rms)


def calibrate_readout(board: Board, smu: Keithley2450, params: ReadoutCalibrationParams,
                      write_verify: WriteVerifyParams, observer: WriteVerifyObserver | None = None
                      ) -> ReadoutCalibration:
    geometry = board.geometry()
    adc = board.adc()
    levels = np.array(params.levels_us)
    rows = np.unique(np.linspace(0, geometry.rows - 1, len(levels)).round().astype(int))
    levels = levels[: len(rows)]

    targets = np.zeros(geometry.shape)
    include = np.zeros(geometry.shape, dtype=bool)
    targets[rows] = levels[:, None]
    include[rows] = True
    loose = write_verify.model_copy(update={"tolerance_us": params.reference_tolerance_us,
                                            "band_us": params.reference_tolerance_us / 2,
                                            "batch": "row"})
    nominal = Readout(adc.lsb_ua, loose.read_voltage)
    WriteVerify(board, nominal, loose, observer).run(targets, include=include)

    board.read_voltage = params.read_voltage
    board.averaging = params.averaging
    smu.configure_voltage_source(params.current_limit_a, params.nplc)
    smu.source_voltage = params.read_voltage
    smu.output_enabled = True
    reference = np.empty((len(rows), geometry.cols))
    codes = np.empty((len(rows), geometry.cols))
    position = (np.arange(geometry.cols) + 0.5) / geometry.cols  # when, within the pass, each cell is measured
    try:
        for i, row in enumerate(rows):
            before = _mean_row(board, int(row), params.repeats)
            for col in range(geometry.cols):
                board.route_probe(int(row), col)
                reference[i, col] = smu.measure_current() * 1e6 / params.read_voltage
            after = _mean_row(board, int(row), params.repeats)
            codes[i] = (1 - position) * before + position * after
    finally:
        _leave_probe_safe(board, smu)
    slope, intercept, rms = fit_columns(reference, codes, params.outlier_mads)
    gain = slope * adc.lsb_ua / params.read_voltage
    return ReadoutCalibration(gain, intercept, rms, rows, reference, codes)


def _mean_row(board: Board, row: int, repeats: int) -> np.ndarray:
    return np.mean([board.read_row(row) for _ in range(repeats)], axis=0)


def _leave_probe_safe(board: Board, smu: Keithley2450) -> None:
    """Probe port open and SMU off, without hiding why the pass ended (the rig repeats this on exit)."""
    for action in (lambda: board.route_probe(None), smu.shutdown):
        try:
            action()
        except DriverError:
            pass
