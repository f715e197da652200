"""Read-out calibration: each column's ADC gain and offset, against the SMU as the reference.

A few reference rows are programmed to levels spread over the window (roughly: any
spread will do, the SMU says exactly where each cell ended up). For each reference
row, the SMU measures every cell of the row in turn through the probe port at the
read voltage, and between two probes the board reads the row a few times; each
cell's board code is the mean of the reads just before and just after its probe.
A cell's 1/f noise has memory: its slow part is the same for the SMU and the board
only if they look within milliseconds of each other, so the pairing is per cell,
not per row (a row's probes take seconds, over which the cell has moved). What
remains differs between the two looks and is the fit's noise; the uncertainty of
each column's gain and offset is reported from it. Per column, ``code = a · G + b``
is fitted by least squares with one pass of outlier rejection (median absolute
deviation); ``gain = a · LSB / V`` and ``offset = b``, each then pulled toward the
columns' common value by as much as its own fit is uncertain (``shrink_to_pool``).
On a PCM chip with aihwkit's 1/f noise one column's fit through 16 cells is uncertain
by about 1 % in gain, more than ADC trims differ; pooling keeps the calibration from
being worse than none and still measures the common gain and offset precisely.
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
    repeats: int = Field(2, ge=1, le=1024)  # averaged row reads between two probes (before one, after the last)
    nplc: float = Field(1.0, ge=0.01, le=10)
    current_limit_a: float = Field(1e-4, gt=0)
    outlier_mads: float = Field(5.0, gt=0)


@dataclass(frozen=True)
class ReadoutCalibration:
    gain: np.ndarray  # per column
    offset_lsb: np.ndarray  # per column
    residual_rms_lsb: np.ndarray  # per column, of the fit
    gain_uncertainty: np.ndarray  # per column, relative standard error of its own fit (before pooling)
    offset_uncertainty_lsb: np.ndarray  # per column, standard error of its own fit (before pooling)
    noise_floor_lsb: float  # RMS disagreement of two measurements of the same cells (one row, twice)
    reference_rows: np.ndarray
    reference_us: np.ndarray  # (levels, cols): the SMU's conductance of each reference cell
    codes: np.ndarray  # (levels, cols): the board's mean code of the same cell

    def readout(self, lsb_ua: float, read_voltage: float) -> Readout:
        return Readout(lsb_ua, read_voltage, gain=self.gain, offset=self.offset_lsb, calibrated=True)


def fit_columns(conductance_us: np.ndarray, codes: np.ndarray, outlier_mads: float) -> tuple[np.ndarray, ...]:
    """Per-column ``codes = a·G + b`` (columns along axis 1); returns a, b, the residual RMS
    and the standard errors of a (relative) and b (codes)."""
    slopes, intercepts, rms, slope_error, intercept_error = [], [], [], [], []
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
        se_a, se_b = _standard_errors(x[keep], residual[keep])
        slope_error.append(se_a / abs(a) if a else np.inf)
        intercept_error.append(se_b)
    return np.array(slopes), np.array(intercepts), np.array(rms), np.array(slope_error), np.array(intercept_error)


def _standard_errors(x: np.ndarray, residual: np.ndarray) -> tuple[float, float]:
    """Ordinary least squares standard errors of slope and intercept (nan with under three points)."""
    n = x.size
    if n < 3:
        return float("nan"), float("nan")
    s2 = float(np.sum(residual**2)) / (n - 2)
    sxx = float(np.sum((x - x.mean()) ** 2))
    if sxx == 0:
        return float("inf"), float("inf")
    return float(np.sqrt(s2 / sxx)), float(np.sqrt(s2 * (1 / n + x.mean() ** 2 / sxx)))


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
    try:
        for i, row in enumerate(rows):
            reference[i], codes[i] = _row_pass(board, smu, int(row), params)
        # the same row again: how far two honest measurements of one cell disagree
        repeat = len(rows) // 2
        again = _row_pass(board, smu, int(rows[repeat]), params)
    finally:
        _leave_probe_safe(board, smu)
    slope, intercept, rms, gain_error, offset_error = fit_columns(reference, codes, params.outlier_mads)
    first = codes[repeat] - (slope * reference[repeat] + intercept)
    second = again[1] - (slope * again[0] + intercept)
    floor = float(np.std(first - second) / np.sqrt(2))
    slope = shrink_to_pool(slope, gain_error * np.abs(slope))
    intercept = shrink_to_pool(intercept, offset_error)
    gain = slope * adc.lsb_ua / params.read_voltage
    return ReadoutCalibration(gain, intercept, rms, gain_error, offset_error, floor, rows, reference, codes)


def shrink_to_pool(estimates: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Per-column estimates pulled toward the columns' common value by how noisy they are
    (empirical Bayes): ``pool + s·(estimate - pool)``, ``s = τ² / (τ² + error²)``, with τ² the
    spread between columns that the estimates' own noise does not explain. Where a cell's
    1/f noise makes one column's fit less certain than the columns differ, this keeps the
    calibration from being worse than none; where columns differ clearly, it changes little."""
    finite = np.isfinite(estimates) & np.isfinite(errors) & (errors > 0)
    if finite.sum() < 3:
        return estimates
    weights = 1.0 / errors[finite] ** 2
    pool = float(np.sum(weights * estimates[finite]) / np.sum(weights))
    between = max(float(np.var(estimates[finite]) - np.mean(errors[finite] ** 2)), 0.0)
    share = np.where(finite, between / (between + np.where(finite, errors, 1.0) ** 2), 0.0)
    return pool + share * (np.where(finite, estimates, pool) - pool)


def _row_pass(board: Board, smu: Keithley2450, row: int, params: ReadoutCalibrationParams
              ) -> tuple[np.ndarray, np.ndarray]:
    """The SMU's conductance of every cell of a row and the board's code for it, read just
    before and just after each probe."""
    cols = board.geometry().cols
    reference = np.empty(cols)
    codes = np.empty(cols)
    before = _mean_row(board, row, params.repeats)
    for col in range(cols):
        board.route_probe(row, col)
        reference[col] = smu.measure_current() * 1e6 / params.read_voltage
        board.route_probe(None)  # the cell back on its column, for the board's reads
        after = _mean_row(board, row, params.repeats)
        codes[col] = (before[col] + after[col]) / 2
        before = after
    return reference, codes


def _mean_row(board: Board, row: int, repeats: int) -> np.ndarray:
    return np.mean([board.read_row(row) for _ in range(repeats)], axis=0)


def _leave_probe_safe(board: Board, smu: Keithley2450) -> None:
    """Probe port open and SMU off, without hiding why the pass ended (the rig repeats this on exit)."""
    for action in (lambda: board.route_probe(None), smu.shutdown):
        try:
            action()
        except DriverError:
            pass
