"""A whole system A·X = B through the closed loop, judged beside the digital solvers it stands in for.

The loop solves blocks that fit its arrays, and ``block_solve`` glues larger systems
together. Each right-hand side's result is then judged twice:

* against **float64** (numpy's solution of the intended system);
* against a **digital solver at the chip's precision**. It runs the same block recursion,
  but each leaf solves with the weights as they were programmed (the intended block plus
  the error the chip's own read-back showed for that leaf). Its inputs are quantised to the
  8-bit DAC codes at the scale the chip's rule would choose. Its outputs are quantised to the
  output ADC's step at that scale. What separates the chip from it is then the analogue
  loop itself: offsets, noise, finite gain, converter gains and read noise at solve time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labctl_calibration.block_inverse import block_solve, leaf_count, relative_errors
from labctl_calibration.closed_loop import DAC_FULL_CODE, ClosedLoopSolver, DefectiveLines, input_scale


@dataclass
class LeafRecord:
    """What one programming of the loop left: for the digital twin of the recursion."""

    rows: int
    weight_error: np.ndarray  # programmed − intended, user units, rows x rows
    us_per_unit: float
    figures: dict


@dataclass
class SystemResult:
    x_chip: np.ndarray  # NaN columns: not settled
    x_digital: np.ndarray  # the digital solver at the chip's precision
    x_float: np.ndarray
    settled: np.ndarray  # per column
    board_s: np.ndarray  # per column, summed over its leaf solves (refinements included)
    attempts: np.ndarray  # per column: solves including retries at half input and refinements
    leaves: list[LeafRecord] = field(default_factory=list)
    programming_board_s: float = 0.0  # write-verify and loop calibration, every leaf
    glue_board_s: float = 0.0  # the recursion's own solves (A11⁻¹A12), shared by every column

    @property
    def chip_errors(self) -> np.ndarray:
        return relative_errors(self.x_chip, self.x_float)

    @property
    def digital_errors(self) -> np.ndarray:
        return relative_errors(self.x_digital, self.x_float)


def solve_system(solver: ClosedLoopSolver, a: np.ndarray, b: np.ndarray, progress=None) -> SystemResult:
    """X for A·X = B on the chip, with the digital solver at its precision and float64 beside it.

    When programming finds stuck cells that ruin a block, their lines go out of use and the
    recursion starts again on the lines that are left (``DefectiveLines``); the board time of
    the abandoned programmings is counted with the rest."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    b = b[:, None] if b.ndim == 1 else b
    spent = 0.0
    for _ in range(solver.size):
        started = solver.board.clock_s()
        try:
            result = _solve_on_lines(solver, a, b, progress)
        except DefectiveLines:
            spent += solver.board.clock_s() - started
            continue
        result.programming_board_s += spent
        return result
    raise DefectiveLines("stuck cells kept ruining the blocks")  # cannot happen: each round removes a line


def _solve_on_lines(solver: ClosedLoopSolver, a: np.ndarray, b: np.ndarray, progress) -> SystemResult:
    leaves: list[LeafRecord] = []
    columns = b.shape[1]
    # a column of B travels through every leaf; its cost and fate accumulate there
    board_s, attempts, settled = np.zeros(columns), np.zeros(columns, dtype=int), np.ones(columns, dtype=bool)
    programming_s, glue_s = [0.0], [0.0]
    total = leaf_count(a.shape[0], solver.leaf_size)

    def chip_leaf(block: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        started = solver.board.clock_s()
        figures = solver.program(block)
        programming_s[0] += solver.board.clock_s() - started
        used = solver.block_lines
        leaves.append(LeafRecord(block.shape[0], solver.programmed[np.ix_(used, used)] - block,
                                 solver.mapping.us_per_unit, {**figures, "excluded_lines": list(solver.excluded)}))
        x = np.empty_like(rhs)
        user = rhs.shape[1] - columns  # the columns before B's are the recursion's own (A11⁻¹A12)
        for k in range(rhs.shape[1]):
            outcome = solver.solve(rhs[:, k])
            x[:, k] = outcome.x
            if k >= user:
                j = k - user
                board_s[j] += outcome.board_s
                attempts[j] += outcome.attempts
                settled[j] &= outcome.settled
            else:
                glue_s[0] += outcome.board_s
                settled[:] &= outcome.settled  # every result is built on the recursion's own columns
        if progress:
            progress("solve", len(leaves), total)
        return x

    x_chip = block_solve(a, b, solver.leaf_size, chip_leaf)
    x_chip[:, ~settled] = np.nan  # a column that railed anywhere in the recursion is no result
    x_digital = block_solve(a, b, solver.leaf_size, DigitalLeaf(solver, leaves))
    return SystemResult(x_chip, x_digital, np.linalg.solve(a, b), settled, board_s, attempts, leaves,
                        programming_s[0], glue_s[0])


@dataclass
class DigitalLeaf:
    """The leaves of the digital recursion, in the order the chip's ran: the programmed weights'
    error on each, and the chip's DAC and ADC quantisation at the scale the chip would pick."""

    solver: ClosedLoopSolver
    leaves: list[LeafRecord]
    _next: int = 0

    def __call__(self, block: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        leaf = self.leaves[self._next]
        self._next += 1
        weights = block + leaf.weight_error
        ranges, headroom = self.solver.ranges, self.solver.params.headroom
        lsb_v = ranges.vmax_v / ranges.full_code
        x = np.empty_like(rhs)
        for k in range(rhs.shape[1]):
            b = rhs[:, k]
            scale = input_scale(weights, b, leaf.us_per_unit, ranges, headroom)
            if scale <= 0:
                x[:, k] = 0.0
                continue
            codes = np.clip(np.rint(scale * b / ranges.imax_ua * DAC_FULL_CODE), -DAC_FULL_CODE, DAC_FULL_CODE)
            volts = -(scale / leaf.us_per_unit) * np.linalg.solve(weights, codes * ranges.imax_ua / DAC_FULL_CODE / scale)
            x[:, k] = -np.rint(volts / lsb_v) * lsb_v * leaf.us_per_unit / scale
        return x
