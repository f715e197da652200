"""Solving A·x = b in one analogue step on a board's closed loop (``IMVM``), calibrated from measurements.

The loop inverts ``A = G0 − G1`` (array 0 minus array 1, PROTOCOL.md). A user matrix maps
onto it as ``G0 = low + u·A⁺`` and ``G1 = low + u·A⁻``, with ``u = (high − low) / max|A|`` µS
per unit. Both cells of a zero entry sit at ``low``, where write-verify still works.

Before anything is programmed, a matrix is refused when the loop cannot settle on it.
Every eigenvalue of ``D⁻¹A`` (``D`` = each row's total conductance) must have a real part
of at least ``min_loop_rate``. That is the stability condition of the circuit, and its
slowest mode sets the settling time (``sims/closed_loop.py`` states the circuit's equations).

Once programmed, the loop is calibrated from measurements only:

* **offsets**: solves at ``b = 0``. The op-amps' input offsets and the ADCs' offsets give a
  fixed output, which is subtracted. The spread over repeats is the noise floor.
* **scales**: random inputs, their outputs compared with what the programmed matrix (as
  write-verify last read it) predicts. A gain per input row (the DACs) and per output
  column (the ADCs) is fitted, and kept only where held-out inputs show it predicts better
  (``loop_scales``).
* **the matrix as programmed**: the read-back ``A`` against the intended one.

Stuck cells whose partners cannot make up for them take their lines out of use
(``loop_lines``); blocks then go on the lines left.

Each solve then scales ``b`` so that the largest output, predicted from the programmed
matrix, lands at ``headroom`` of full scale. It stops short where the input DAC's range
ends first. An output at full code is a rail. The solve is then repeated at half the
input, and a solve that still rails is reported as not settled, never as a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from labctl_calibration.loop_lines import embed, plan_lines
from labctl_calibration.loop_scales import choose_scales
from labctl_calibration.write_verify import WriteVerify
from labctl_drivers.board import LoopRanges
from labctl_drivers.interface import ChipBoard

DAC_FULL_CODE = 127
RETRIES_AT_HALF_INPUT = 3


class SolveParams(BaseModel):
    """The ``[solve]`` table of a protocol."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    low_us: float = Field(0.2, gt=0)  # both cells of a zero entry here
    high_us: float = Field(20.0, gt=0)  # the largest |A_ij|: its cell here
    offset_repeats: int = Field(16, ge=2, le=4096)  # solves at b = 0: offsets and the noise floor
    calibration_vectors: int = Field(48, ge=4, le=4096)  # random inputs the loop's scales are fitted on
    refine_steps: int = Field(0, ge=0, le=100)  # digital residual corrections after the one-step solve (0: one step)
    repeats: int = Field(16, ge=1, le=256)  # settles averaged per input on the board (READ:AVG): the cells'
    # fast read noise is fresh in each
    headroom: float = Field(0.8, gt=0, le=1)  # the largest predicted output at this fraction of full scale
    min_loop_rate: float = Field(1e-3, gt=0)  # min Re λ(D⁻¹A) below which a matrix is refused
    defect_error_us: float = Field(1.0, gt=0)  # a stuck cell leaving its entry further off takes its line out of use
    example: Literal["random-spd", "heat"] = "random-spd"  # the built-in system when no --matrix is given
    size: int = Field(64, ge=2, le=4096)  # the example's rows
    condition: float = Field(8.0, ge=1)  # random-spd: its condition number
    rhs_columns: int = Field(16, ge=1, le=4096)  # the example's right-hand sides
    seed: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> SolveParams:
        if self.low_us >= self.high_us:
            raise ValueError(f"low_us ({self.low_us}) must be below high_us ({self.high_us})")
        return self


class UnsolvableMatrix(ValueError):
    """A matrix the loop cannot settle on: refused with the reason, before it is used."""


class DefectiveLines(Exception):
    """Programming found stuck cells that ruin entries of the block: their lines are now out
    of use, and the block (and the recursion it belongs to) must be placed again."""


@dataclass(frozen=True)
class Mapping:
    """A user matrix as the two arrays' conductances."""

    g_pos_us: np.ndarray
    g_neg_us: np.ndarray
    us_per_unit: float

    @classmethod
    def of(cls, a: np.ndarray, low_us: float, high_us: float) -> Mapping:
        largest = float(np.abs(a).max())
        if not largest > 0:
            raise UnsolvableMatrix("the matrix is all zeros")
        unit = (high_us - low_us) / largest
        return cls(low_us + unit * np.clip(a, 0, None), low_us + unit * np.clip(-a, 0, None), unit)


def loop_rate(g_pos_us: np.ndarray, g_neg_us: np.ndarray) -> float:
    """min Re λ(D⁻¹(G0 − G1)): how fast the loop's slowest mode settles, per unit of op-amp bandwidth."""
    d = (g_pos_us + g_neg_us).sum(axis=1)
    if not np.all(d > 0):
        return 0.0
    eigenvalues = np.linalg.eigvals((g_pos_us - g_neg_us) / d[:, None])
    return float(eigenvalues.real.min())


def check_solvable(a: np.ndarray, params: SolveParams, where: str = "the matrix") -> float:
    """The loop rate of ``a`` as mapped; UnsolvableMatrix saying why when it is too slow, unstable or singular."""
    if not np.all(np.isfinite(a)):
        raise UnsolvableMatrix(f"{where} holds a value that is not finite")
    mapping = Mapping.of(a, params.low_us, params.high_us)
    condition = float(np.linalg.cond(a))
    if not condition < 1e12:
        raise UnsolvableMatrix(f"{where} is singular (condition number {condition:.3g})")
    rate = loop_rate(mapping.g_pos_us, mapping.g_neg_us)
    if rate < params.min_loop_rate:
        what = "unstable: an eigenvalue of D⁻¹A has a negative real part" if rate <= 0 else "too slow to settle"
        raise UnsolvableMatrix(f"{where} is {what} (min Re λ = {rate:.3g}, the loop needs at least "
                               f"{params.min_loop_rate:g}); a positive-definite or diagonally dominant matrix settles")
    return rate


def check_system(a: np.ndarray, size: int, params: SolveParams) -> list[float]:
    """Every block the recursion will put on a ``size`` loop, checked with exact arithmetic
    before anything is programmed: the loop rate of each, or UnsolvableMatrix naming the block."""
    from labctl_calibration.block_inverse import block_solve

    rates: list[float] = []

    def exact_leaf(block: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        where = "the matrix" if block.shape[0] == a.shape[0] else f"block {len(rates) + 1} of the recursion"
        rates.append(check_solvable(embed(block, np.arange(size), size), params, where))
        return np.linalg.solve(block, rhs)

    block_solve(a, np.zeros((a.shape[0], 1)), size, exact_leaf)
    return rates


@dataclass
class LoopCalibration:
    """What one calibration of the loop found, for the block just programmed."""

    offset_codes: np.ndarray  # output at b = 0
    noise_codes: float  # RMS spread of an output over repeats at b = 0
    input_gain: np.ndarray  # per row
    output_gain: np.ndarray  # per column
    residual_codes: float  # RMS of the fitted model's misfit on the calibration inputs
    matrix_error: float  # ‖A_programmed − A‖ / ‖A‖
    loop_rate: float  # of the programmed matrix
    scales: str  # which scale model the held-out vectors chose: "nominal", "output" or "input+output"


@dataclass
class SolveOutcome:
    """One right-hand side through the loop."""

    x: np.ndarray  # in the user's units, NaN when not settled
    settled: bool
    input_scale_ua_per_unit: float
    input_codes_max: int
    output_fraction: float  # largest |output code| over full code
    board_s: float
    attempts: int


def input_scale(a_estimate: np.ndarray, b: np.ndarray, us_per_unit: float, ranges: LoopRanges,
                headroom: float) -> float:
    """µA per unit of ``b``: the largest predicted output at ``headroom`` of full scale, or the
    input DAC's full scale on the largest |b_i|, whichever comes first."""
    predicted = np.abs(np.linalg.solve(a_estimate, b)).max() / us_per_unit  # volts per µA·unit of b
    largest = np.abs(b).max()
    if not largest > 0:
        return 0.0
    by_output = headroom * ranges.vmax_v / predicted if predicted > 0 else np.inf
    return float(min(by_output, ranges.imax_ua / largest))


@dataclass
class ClosedLoopSolver:
    """Programs a square matrix onto the loop's two arrays, calibrates the loop, and solves with it."""

    board: ChipBoard
    verify: WriteVerify
    params: SolveParams
    ranges: LoopRanges = field(init=False)
    size: int = field(init=False)
    mapping: Mapping | None = None
    programmed: np.ndarray | None = None  # the whole loop's matrix as write-verify last read it, user units
    intended: np.ndarray | None = None  # the block as the user gave it
    excluded: list[int] = field(default_factory=list)  # lines stuck cells have taken out of use
    block_lines: np.ndarray | None = None  # the physical lines the programmed block sits on
    railed_lines: list[int] = field(default_factory=list)  # lines out of use, driven to a rail (loop_lines)
    calibration: LoopCalibration | None = None
    programmings: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ranges = self.board.solve_ranges()
        geometry = self.board.geometry()
        if geometry.arrays < 2 or geometry.rows != geometry.cols:
            raise UnsolvableMatrix(f"the closed loop needs two square arrays; this board has {geometry.arrays} of "
                                   f"{geometry.rows}x{geometry.cols}")
        self.size = geometry.rows
        self._rng = np.random.default_rng(self.params.seed)
        self._averaging: int | None = None  # READ:AVG as last set here (write-verify sets its own)

    @property
    def lines(self) -> np.ndarray:
        """The lines blocks may use, in order."""
        return np.array([k for k in range(self.size) if k not in self.excluded], dtype=int)

    @property
    def leaf_size(self) -> int:
        return int(self.lines.size)

    # ---- programming -------------------------------------------------------------

    def program(self, a: np.ndarray) -> dict:
        """Write-verify ``a`` onto both arrays (on the usable lines, the rest a settled identity)
        and calibrate the loop on it. Stuck cells that ruin entries of it take their lines out of
        use, and ``a`` is placed again on the lines left; DefectiveLines once it no longer fits."""
        a = np.asarray(a, dtype=float)
        while True:
            if a.shape[0] > self.leaf_size:
                raise DefectiveLines(f"a {a.shape[0]}x{a.shape[0]} block does not fit the loop's {self.leaf_size} "
                                     f"usable lines (line(s) {', '.join(map(str, self.excluded))} out of use)")
            try:
                return self._program_on_lines(a)
            except DefectiveLines:
                continue  # the lines are fewer now: fit the block on them, or tell the caller it cannot

    def _program_on_lines(self, a: np.ndarray) -> dict:
        self.intended = a
        self.block_lines = self.lines[: a.shape[0]]
        full = embed(self.intended, self.lines, self.size)
        check_solvable(full, self.params)
        mapping = Mapping.of(full, self.params.low_us, self.params.high_us)
        targets = [mapping.g_pos_us.copy(), mapping.g_neg_us.copy()]
        results = [self._program_array(array, targets[array]) for array in (0, 1)]
        compensated = self._compensate_stuck(results, targets, mapping.us_per_unit * full)
        achieved = [r.achieved_us for r in results]
        self.board.array = 0
        self.mapping = mapping
        self.programmed = (achieved[0] - achieved[1]) / mapping.us_per_unit
        lines, self.railed_lines = plan_lines(
            self.programmed * mapping.us_per_unit, full * mapping.us_per_unit, results[0].stuck | results[1].stuck,
            self.block_lines, self.excluded, self.params.defect_error_us, self.params.high_us / 4)
        if lines:
            self.excluded = sorted({*self.excluded, *lines})
            if self.leaf_size < 2:
                raise UnsolvableMatrix("stuck cells have ruined nearly every line of the loop")
            raise DefectiveLines(f"stuck cells left entries more than {self.params.defect_error_us:g} µS off: "
                                 f"line(s) {', '.join(map(str, lines))} taken out of use")
        rate = self.programmed_rate()
        if rate < self.params.min_loop_rate:
            raise UnsolvableMatrix(f"the matrix as programmed would not settle (min Re λ = {rate:.3g}): "
                                   f"stuck cells on line(s) {', '.join(map(str, self.excluded)) or 'none found'}")
        self.calibration = self._calibrate(full)
        figures = {"rows": int(a.shape[0]), "us_per_unit": mapping.us_per_unit,
                   "stuck_cells": int(sum(r.stuck.sum() for r in results)), "compensated_cells": compensated,
                   "converged_fraction": float(np.mean([r.converged_fraction for r in results])),
                   "error_sigma_us": float(np.mean([r.error_sigma_us for r in results])),
                   **self.calibration_figures()}
        self.programmings.append(figures)
        return figures

    def _program_array(self, array: int, targets_us: np.ndarray, include: np.ndarray | None = None,
                       known_stuck: np.ndarray | None = None):
        self.board.array = array
        if hasattr(self.verify.observer, "array"):  # the run store's recorder tags rows by array
            self.verify.observer.array = array
        result = self.verify.run(targets_us, include=include, known_stuck=known_stuck)
        self.board.array = 0
        self._averaging = None
        return result

    def _compensate_stuck(self, results: list, targets: list[np.ndarray], intended_us: np.ndarray) -> int:
        """A stuck cell's entry is kept by its partner in the other array: G1 = G0_stuck − u·A for
        a stuck positive cell, G0 = G1_stuck + u·A for a stuck negative one, where the window
        allows. What it does not allow stays in the programmed matrix the loop is calibrated on."""
        changed = 0
        for stuck_array in (0, 1):
            partner = 1 - stuck_array
            stuck = results[stuck_array].stuck & ~results[partner].stuck
            if not stuck.any():
                continue
            held = results[stuck_array].achieved_us
            wanted = held - intended_us if stuck_array == 0 else held + intended_us
            retarget = targets[partner].copy()
            retarget[stuck] = np.maximum(wanted[stuck], self.params.low_us)  # write-verify reports what the window refuses
            again = self._program_array(partner, retarget, include=stuck, known_stuck=results[partner].stuck)
            results[partner] = results[partner].merged(again, stuck)
            targets[partner] = retarget
            changed += int(stuck.sum())
        return changed

    def programmed_rate(self) -> float:
        """The loop rate of the usable lines as programmed (a line out of use settles or rails on
        its own; either way its output is not read)."""
        used = np.ix_(self.lines, self.lines)
        a_us = self.programmed[used] * self.mapping.us_per_unit
        low = self.params.low_us
        return loop_rate(np.clip(a_us, 0, None) + low, np.clip(-a_us, 0, None) + low)

    # ---- calibration -------------------------------------------------------------

    def _raw_solve(self, codes: np.ndarray, repeats: int = 1) -> np.ndarray:
        """The output codes of one input, averaged on the board over ``repeats`` settles
        (``READ:AVG``: one round trip however many); a rail in any of them reads as the rail.

        A line out of use gets no input, except one whose diagonal a stuck cell left weak. That
        one is driven at full input every time so it sits at a rail (``loop_lines``)."""
        inputs = np.clip(np.rint(codes), -DAC_FULL_CODE, DAC_FULL_CODE).astype(np.int16)
        inputs[self.excluded] = 0
        inputs[self.railed_lines] = DAC_FULL_CODE
        if self._averaging != repeats:
            self.board.averaging = repeats
            self._averaging = repeats
        return self.board.solve(inputs).astype(float)

    def _calibrate(self, intended: np.ndarray) -> LoopCalibration:
        p, n, full = self.params, self.size, self.ranges.full_code
        zeros = np.array([self._raw_solve(np.zeros(n)) for _ in range(p.offset_repeats)])
        offset = zeros.mean(axis=0)
        noise = float(zeros.std(axis=0, ddof=1).mean())
        a_g = self.programmed * self.mapping.us_per_unit  # µS
        inputs, outputs = [], []
        for _ in range(p.calibration_vectors):
            b = np.zeros(n)
            b[self.lines] = self._rng.standard_normal(self.leaf_size)  # a line out of use is given nothing
            scale = input_scale(a_g, b, 1.0, self.ranges, 0.6)
            codes = np.rint(scale * b / self.ranges.imax_ua * DAC_FULL_CODE)
            measured = self._raw_solve(codes, p.repeats)
            if np.abs(measured[self.lines]).max() >= full:
                continue  # a rail tells nothing about the scale
            inputs.append(codes * self.ranges.imax_ua / DAC_FULL_CODE)  # µA, nominal
            outputs.append((measured - offset) * self.ranges.vmax_v / full)  # V, nominal
        if len(inputs) < 4:
            raise UnsolvableMatrix("the loop railed on almost every calibration input: the programmed matrix "
                                   "is not the one intended (stuck cells?)")
        current, volts = np.array(inputs).T, np.array(outputs).T  # (n, vectors)
        choice, input_gain, output_gain, residual_v = choose_scales(a_g, current, volts, self.lines)
        residual = residual_v * full / self.ranges.vmax_v
        error = float(np.linalg.norm(self.programmed - intended) / np.linalg.norm(intended))
        rate = self.programmed_rate()
        return LoopCalibration(offset, noise, input_gain, output_gain, residual, error, rate, choice)

    def calibration_figures(self) -> dict:
        c = self.calibration
        lsb_mv = 1e3 * self.ranges.vmax_v / self.ranges.full_code
        return {"offset_rms_mv": float(np.sqrt(np.mean(c.offset_codes ** 2)) * lsb_mv),
                "noise_floor_codes": c.noise_codes, "scale_fit_residual_codes": c.residual_codes,
                "scales": c.scales, "input_gain_spread": float(c.input_gain.std()), "output_gain_spread": float(c.output_gain.std()),
                "matrix_error": c.matrix_error, "programmed_loop_rate": c.loop_rate}

    # ---- solving -----------------------------------------------------------------

    def solve(self, b: np.ndarray, refine_steps: int | None = None, matrix: np.ndarray | None = None) -> SolveOutcome:
        """x with A·x = b: one analogue step, then ``refine_steps`` (default the protocol's)
        mixed-precision corrections, each the loop's solution for the residual
        ``b − A·x`` that float64 computes against the intended ``A`` (Le Gallo et al.,
        Nature Electronics 2018). They converge while the programmed matrix is within a
        contraction of the intended one. ``matrix`` refines against another ``A`` near
        the programmed one, which then need not be programmed again (a Kalman filter's
        innovation covariance from one step to the next)."""
        steps = self.params.refine_steps if refine_steps is None else refine_steps
        target = self.intended if matrix is None else np.asarray(matrix, dtype=float)
        if target.shape != self.intended.shape:
            raise ValueError(f"the matrix to refine against is {target.shape}, the programmed block "
                             f"{self.intended.shape}")
        outcome = self._one_step(b)
        for _ in range(steps):
            if not outcome.settled:
                break
            correction = self._one_step(b - target @ outcome.x)
            outcome = SolveOutcome(outcome.x + correction.x, correction.settled, outcome.input_scale_ua_per_unit,
                                   outcome.input_codes_max, outcome.output_fraction,
                                   outcome.board_s + correction.board_s, outcome.attempts + correction.attempts)
        return outcome

    def _one_step(self, b: np.ndarray) -> SolveOutcome:
        if self.calibration is None:
            raise RuntimeError("program a matrix before solving")
        n, full, c = self.size, self.ranges.full_code, self.calibration
        rhs = np.zeros(n)
        rhs[self.block_lines] = b
        scale = input_scale(self.programmed, rhs, self.mapping.us_per_unit, self.ranges, self.params.headroom)
        started = self.board.clock_s()
        attempts = 0
        while True:
            attempts += 1
            codes = np.clip(np.rint(scale * rhs / (c.input_gain * self.ranges.imax_ua) * DAC_FULL_CODE),
                            -DAC_FULL_CODE, DAC_FULL_CODE)
            measured = self._raw_solve(codes, self.params.repeats) if scale > 0 else c.offset_codes
            railed = np.abs(measured[self.lines]).max() >= full  # a line out of use is not read
            if not railed or attempts > RETRIES_AT_HALF_INPUT:
                break
            scale /= 2
        board_s = self.board.clock_s() - started
        if railed:
            x = np.full(b.size, np.nan)
        else:
            volts = (measured - c.offset_codes) * self.ranges.vmax_v / full / c.output_gain
            x = (-volts * self.mapping.us_per_unit / scale)[self.block_lines] if scale > 0 else np.zeros(b.size)
        return SolveOutcome(x, not railed, scale, int(np.abs(codes).max()),
                            float(np.abs(measured[self.lines]).max() / full), board_s, attempts)
