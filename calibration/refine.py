"""MVM-level refinement: after write-verify, judge each cell by the error the matrix computes.

Write-verify judges each cell by its own read. What a deployment sees is the MVM: every
cell at once, through the MVM path's own wires and converter. Refinement, in the spirit of
gradient-descent programming (Büchel et al., IEDM 2022), measures the deployed matrix with
calibration inputs and estimates, from the output error alone, each cell's error against
the intended matrix:

* ``K`` random signed inputs ``V`` (``K > rows``), outputs ``Y`` through the calibrated MVM
  path; the error ``E = Y − V·W*`` is, per column, ``V·Δ_c + b_c`` plus noise;
* least squares gives ``Δ`` (rows x cols, µS) and each estimate's standard error from the
  fit's residual; the part of ``Δ_c`` along ``W*_c`` is a column gain, which the
  deployment's per-column output scale removes, so it is projected out: no cell is
  re-programmed for what a scale factor fixes;
* cells whose estimate exceeds ``threshold_us`` (and are not stuck) go through write-verify
  again, aimed at ``target − carry·Δ``. ``carry = 0`` re-verifies them at their target: on
  PCM most of a cell's MVM-seen error is its slow 1/f state, which re-programming restarts,
  so carrying it into the aim over-corrects (measured on the twin: ``carry = 0.5`` leaves a
  larger true error than ``0``). A board whose MVM path differs from its read path cell by
  cell (IR drop in the MVM pattern) is where ``carry`` earns its keep.

Only board measurements are used; the estimate is stored per cell with its uncertainty.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labctl_calibration.mvm import at_gain, auto_gain, measure_outputs
from labctl_calibration.readout import Readout
from labctl_calibration.write_verify import WriteVerify, WriteVerifyResult
from labctl_drivers.interface import ChipBoard


class RefineParams(BaseModel):
    """A protocol file's ``[refine]`` table."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    rounds: int = Field(1, ge=1, le=20)
    vectors_per_row: float = Field(4.0, ge=1.25, le=64)  # calibration inputs per round: this x rows (> rows)
    averaging: int = Field(16, ge=1, le=256)
    threshold_us: float = Field(0.75, gt=0)  # re-program a cell whose estimated error exceeds this
    carry: float = Field(0.0, ge=0, le=1)  # fraction of the estimated error moved into the cell's next aim
    band_us: float | None = Field(None, gt=0)  # the re-verify's band (default: write-verify's own)
    # board time waited before each round's MVMs: RRAM cells relax for tens of seconds after a verify,
    # and an estimate made before that judges cells by a state they leave
    settle_s: float = Field(0.0, ge=0, le=86_400)
    headroom: float = Field(0.5, gt=0, le=1)  # the MVM range, as the mvm step chooses it
    seed: int = Field(1, ge=0)  # calibration inputs differ from the mvm step's held-out ones (its seed 0)


@dataclass(frozen=True)
class CellErrorEstimate:
    error_us: np.ndarray  # (rows, cols): each cell's estimated error against the intended matrix
    sigma_us: np.ndarray  # its standard error
    outputs_ua: np.ndarray  # (vectors, cols) the measured outputs it is estimated from
    intended_ua: np.ndarray  # what the intended matrix computes for the same inputs


@dataclass(frozen=True)
class RefineRound:
    vectors: int
    gain: int
    estimated_rms_us: float  # of the usable cells' estimates, before this round's re-programming
    estimate_sigma_us: float  # median standard error of one cell's estimate
    picked: int  # cells sent through write-verify again
    board_s: float


@dataclass(frozen=True)
class RefineResult:
    write_verify: WriteVerifyResult  # the earlier result with the re-programmed cells' new state
    rounds: list[RefineRound]
    estimates: list[CellErrorEstimate]
    picked: list[np.ndarray]


def estimate_cell_error(volts: np.ndarray, outputs_ua: np.ndarray, intended_us: np.ndarray) -> CellErrorEstimate:
    """Least squares of the output error on the inputs (one per column, one factorisation
    for all columns), with a per-column offset; the component along each column's intended
    weights (a gain) projected out."""
    vectors, rows = volts.shape
    if vectors <= rows + 1:
        raise ValueError(f"{vectors} calibration vectors cannot determine {rows} rows of cell errors: need more than "
                         f"{rows + 1}")
    intended_ua = volts @ intended_us
    design = np.hstack([volts, np.ones((vectors, 1))])
    solution, *_ = np.linalg.lstsq(design, outputs_ua - intended_ua, rcond=None)
    delta = solution[:-1]
    norm = (intended_us * intended_us).sum(axis=0)
    along = np.where(norm > 0, (delta * intended_us).sum(axis=0) / np.where(norm > 0, norm, 1.0), 0.0)
    delta = delta - along * intended_us
    residual = outputs_ua - intended_ua - design @ solution
    noise = np.sqrt((residual**2).sum(axis=0) / (vectors - rows - 1))  # per column, µA
    leverage = np.diag(np.linalg.inv(design.T @ design))[:-1]  # per row, 1/V²
    sigma = np.sqrt(np.outer(leverage, noise**2))
    return CellErrorEstimate(delta, sigma, outputs_ua, intended_ua)


def refine(board: ChipBoard, readout: Readout, verify: WriteVerify, intended_us: np.ndarray, first: WriteVerifyResult,
           params: RefineParams, window_us: tuple[float, float] | None = None,
           wait: Callable[[float], None] = time.sleep) -> RefineResult:
    """Rounds of estimate, pick and re-program after ``first`` (write-verify's result).
    ``intended_us`` is what the deployment computes against (the targets, or for signed
    pairs the aims that compensate stuck cells); ``window_us`` bounds a carried aim; ``wait``
    lets ``settle_s`` of time pass (the twin's virtual clock, a real bench's sleep)."""
    rows = intended_us.shape[0]
    if params.band_us is not None:  # a tighter band for the cells the MVM error points at
        band = params.band_us
        verify = WriteVerify(verify.board, verify.readout, verify.p.model_copy(
            update={"band_us": band, "tolerance_us": max(band, verify.p.tolerance_us)}), verify.observer)
    rng = np.random.default_rng(params.seed)
    result, rounds, estimates, picks = first, [], [], []
    vectors = max(math.ceil(params.vectors_per_row * rows), rows + 2)
    for _ in range(params.rounds):
        t0 = board.clock_s()
        if params.settle_s > 0:
            wait(params.settle_s)
        inputs = rng.integers(-127, 128, size=(vectors, rows))
        volts = inputs / 127.0 * readout.read_voltage
        board.averaging = params.averaging
        gain = auto_gain(board, readout, inputs[:8], params.headroom)
        with at_gain(board, gain):
            outputs, _ = measure_outputs(board, readout, inputs, gain)
        estimate = estimate_cell_error(volts, outputs, intended_us)
        usable = ~(result.stuck | result.unreachable)
        picked = (np.abs(estimate.error_us) > params.threshold_us) & usable
        aims = intended_us - params.carry * estimate.error_us
        if window_us is not None:
            aims = np.clip(aims, *window_us)
        if picked.any():
            again = verify.run(np.where(picked, aims, result.targets_us), include=picked, known_stuck=result.stuck)
            result = result.merged(again, picked)
        rounds.append(RefineRound(vectors, gain, float(np.sqrt(np.mean(estimate.error_us[usable] ** 2)))
                                  if usable.any() else float("nan"), float(np.median(estimate.sigma_us)),
                                  int(picked.sum()), board.clock_s() - t0))
        estimates.append(estimate)
        picks.append(picked)
    return RefineResult(result, rounds, estimates, picks)
