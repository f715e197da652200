"""Read-out calibration: each column's ADC gain and offset, against the SMU as the reference.

Reference rows are programmed to a low and a high level (roughly: the SMU says exactly
where each cell ended up). For each reference row, the SMU measures every cell of the
row in turn through the probe port at the read voltage, and between two probes the
board reads the row a few times; each cell's board code is the mean of the reads just
before and just after its probe. A cell's 1/f noise has memory: its slow part is the
same for the SMU and the board only if they look within milliseconds of each other, so
the pairing is per cell, not per row. What remains differs between the two looks and is
a point's noise; it grows with the conductance (σ ∝ G^0.35 on PCM), so quiet low cells
fix the offset and high cells, whose signal outgrows their noise, the gain: levels in
between inform neither. Because the mismatch of the two looks, not the SMU's own noise,
limits a point, a short SMU integration (0.05 PLC) buys many more points per second.

Per column, ``code = a · G + b`` is fitted by least squares weighted by each row's noise
(measured across the columns, ``fit_columns_weighted``); ``gain = a · LSB / V`` and
``offset = b``. On a PCM chip one column's own fit is still uncertain by about as much as
ADC trims differ, so each estimate is pulled toward the columns' common value by what
two halves of the reference rows agree on (``shrink_split_half``): the columns' real
spread is the halves' covariance, the estimate's noise their difference. That keeps the
calibration from being worse than none and still measures the common gain and offset
precisely; on quieter RRAM cells most of each column's own estimate is kept.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labctl_calibration.readout import Readout
from labctl_calibration.write_verify import WriteVerify, WriteVerifyObserver, WriteVerifyParams
from labctl_drivers.interface import ChipBoard
from labctl_drivers.errors import DriverError
from labctl_drivers.smu import Keithley2450


class ReadoutCalibrationParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # one reference row per level (spread over the rows; a smaller array keeps the lowest and the
    # highest): low rows fix the offset, where the cells are quiet, high rows the gain, where the
    # signal outgrows their 1/f noise (σ ∝ G^0.35 on PCM); a few levels in between cost nothing
    # and give the read-noise step cells across the window
    levels_us: tuple[Annotated[float, Field(ge=0, le=1000)], ...] = Field(
        (0.5,) * 4 + (5.0, 9.0, 13.0, 17.0) + (21.5,) * 8, min_length=2, max_length=4096)  # a line needs two
    reference_tolerance_us: float = Field(1.0, gt=0)
    read_voltage: float = Field(0.2, gt=0, le=0.3)
    averaging: int = Field(256, ge=1, le=256)
    repeats: int = Field(2, ge=1, le=1024)  # averaged row reads between two probes (before one, after the last)
    # the SMU's integration: the cell's 1/f noise between the SMU's look and the board's, not the
    # SMU's own noise, is what limits a point, so a short integration buys many more points
    nplc: float = Field(0.05, ge=0.01, le=10)
    current_limit_a: float = Field(1e-4, gt=0)
    outlier_mads: float = Field(5.0, gt=0)
    weighted: bool = True  # each reference row weighted by its level's noise, measured across the columns
    split_half: bool = True  # pooled by what two halves of the rows agree on (else by each fit's own errors)


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
    # how much of each column's own gain and offset estimate was kept (the rest pooled), as two
    # halves of the reference rows agree; None when pooled by each fit's own standard errors
    split_half_shares: tuple[float, float] | None = None

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


def fit_columns_weighted(conductance_us: np.ndarray, codes: np.ndarray, outlier_sigmas: float
                         ) -> tuple[np.ndarray, ...]:
    """Per-column ``codes = a·G + b`` weighted by each reference row's noise, with the noise
    measured across the columns rather than guessed per column.

    A cell's 1/f noise grows with its conductance (on PCM, σ ∝ G^0.35), so a high level
    says much about the gain and little about the offset, and a low level the reverse;
    equal weights let the noisy high rows swamp the offset. Every cell of a reference row
    sits near one level, so the row's residual variance, pooled over all columns (robustly:
    from the median squared residual), is that level's noise; with two points per column a
    column's own residuals say nothing about it. Points beyond ``outlier_sigmas`` of their
    row's noise are dropped and the fit repeated. Standard errors follow from the pooled
    noise, so they are as trustworthy with four reference rows as with sixteen."""
    x, y = np.asarray(conductance_us, dtype=float), np.asarray(codes, dtype=float)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = np.where(finite, x, 0.0), np.where(finite, y, 0.0)
    points = float(np.mean(finite.sum(axis=0)))
    dof = max(points - 2.0, 1.0)
    weights = finite.astype(float)  # equal weights first: the noise is not known yet
    # a column or row without enough points gives nan, not a warning
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean and nanmedian of an all-nan row
        for rounds in range(3):
            a, b, det, sw, swxx = _weighted_line(x, y, weights)
            if rounds == 2:
                break
            residual = np.where(finite, y - (a * x + b), np.nan)
            if rounds == 0:  # robust first: the median squared residual (χ²₁'s median is 0.455 σ²)
                variance = np.nanmedian(residual**2, axis=1) / 0.4549
            else:  # then the mean over the points kept: 1/f noise has heavier tails than a Gaussian
                variance = np.nanmean(np.where(weights > 0, residual, np.nan) ** 2, axis=1)
            variance = np.maximum(np.nan_to_num(variance * points / dof, nan=1e-6), 1e-6)
            kept = finite & (np.abs(np.nan_to_num(residual)) <= outlier_sigmas * np.sqrt(variance)[:, None])
            weights = np.where(kept, 1.0 / variance[:, None], 0.0)
        residual = np.where(weights > 0, y - (a * x + b), np.nan)
        rms = np.sqrt(np.nanmean(residual**2, axis=0))
        se_a, se_b = np.sqrt(sw / det), np.sqrt(swxx / det)
        return a, b, rms, se_a / np.abs(a), se_b


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-column weighted least squares line ``y = a·x + b``, in closed form (nan where the
    points do not fix a line); also the determinant and sums the standard errors need."""
    sw, swx, swy = w.sum(axis=0), (w * x).sum(axis=0), (w * y).sum(axis=0)
    swxx, swxy = (w * x * x).sum(axis=0), (w * x * y).sum(axis=0)
    det = sw * swxx - swx**2
    det = np.where(det > 1e-12 * np.maximum(sw * swxx, 1e-300), det, np.nan)
    return (sw * swxy - swx * swy) / det, (swxx * swy - swx * swxy) / det, det, sw, swxx


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


def calibrate_readout(board: ChipBoard, smu: Keithley2450, params: ReadoutCalibrationParams,
                      write_verify: WriteVerifyParams, observer: WriteVerifyObserver | None = None
                      ) -> ReadoutCalibration:
    geometry = board.geometry()
    adc = board.adc()
    levels = np.array(params.levels_us)
    rows = np.unique(np.linspace(0, geometry.rows - 1, len(levels)).round().astype(int))
    levels = levels[np.linspace(0, len(levels) - 1, len(rows)).round().astype(int)]  # the lowest and the highest kept

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
    fit = fit_columns_weighted if params.weighted else fit_columns
    slope, intercept, rms, gain_error, offset_error = fit(reference, codes, params.outlier_mads)
    halves = [np.arange(len(rows))[h::2] for h in (0, 1)]
    first = codes[repeat] - (slope * reference[repeat] + intercept)
    second = again[1] - (slope * again[0] + intercept)
    floor = float(np.std(first - second) / np.sqrt(2))
    shares: tuple[float, float] | None = None
    if params.split_half and all(len(set(levels[h])) >= 2 for h in halves):
        first_half, second_half = (fit(reference[h], codes[h], params.outlier_mads) for h in halves)
        slope, gain_share = shrink_split_half(slope, first_half[0], second_half[0])
        intercept, offset_share = shrink_split_half(intercept, first_half[1], second_half[1])
        shares = (gain_share, offset_share)
    else:
        with np.errstate(invalid="ignore"):  # a flat column (slope 0, relative error inf) is not pooled
            slope = shrink_to_pool(slope, gain_error * np.abs(slope))
        intercept = shrink_to_pool(intercept, offset_error)
    gain = slope * adc.lsb_ua / params.read_voltage
    return ReadoutCalibration(gain, intercept, rms, gain_error, offset_error, floor, rows, reference, codes, shares)


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


def shrink_split_half(estimates: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, float]:
    """``estimates`` pulled toward their mean by what two independent halves of the data say
    about them: across columns, the halves' covariance is the spread the columns really
    have (noise is independent between halves), and a quarter of the variance of their
    difference is the noise of the estimate from both. Unlike a fit's own standard errors,
    this needs no noise model, and a column's consistent quirk (its ADC's non-linearity at
    the reference levels) counts as real, as it is for every read that column makes."""
    ok = np.isfinite(estimates) & np.isfinite(first) & np.isfinite(second)
    if ok.sum() < 3:
        return estimates, 1.0
    spread = max(float(np.cov(first[ok], second[ok])[0, 1]), 0.0)
    noise = float(np.var(first[ok] - second[ok])) / 4
    share = spread / (spread + noise) if spread + noise > 0 else 0.0
    pool = float(np.mean(estimates[ok]))
    return np.where(ok, pool + share * (estimates - pool), pool), share


def _row_pass(board: ChipBoard, smu: Keithley2450, row: int, params: ReadoutCalibrationParams
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


def _mean_row(board: ChipBoard, row: int, repeats: int) -> np.ndarray:
    return np.mean([board.read_row(row) for _ in range(repeats)], axis=0)


def _leave_probe_safe(board: ChipBoard, smu: Keithley2450) -> None:
    """Probe port open and SMU off, without hiding why the pass ended (the rig repeats this on exit)."""
    for action in (lambda: board.route_probe(None), smu.shutdown):
        try:
            action()
        except DriverError:
            pass
