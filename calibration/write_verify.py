"""Batched, adaptive program-and-verify of a whole array to target conductances.

Algorithm: iterative program-and-verify with a per-cell learned response, in the
spirit of Papandreou et al., "Programming algorithms for multilevel phase-change
memory", ISCAS 2011, combined with incremental-step threshold search (ISPP, as in
flash and RRAM write-verify). Every cell keeps, for SET and for RESET, an estimate
of its switching threshold θ (mV) and its response slope s (µS per mV above θ).
Each iteration it receives one pulse of amplitude ``θ + aim·|error|/s`` in the
direction of its error; the following read updates the model:

* no measurable move → the threshold is above the amplitude used: θ := amplitude;
* a move → s is pulled (geometrically, to damp read noise) toward what was seen;
* no move at the polarity's maximum amplitude, ``stuck_after`` times → stuck.

All cells are handled together: one array (or row) block of amplitudes per round
trip and one array (or row) read to verify, so the wire cost per iteration does not
grow with the number of cells. With ``batch = "auto"`` on a board listing ``LIST``,
each iteration sends whichever costs fewer bytes: the dense block (2 bytes a cell) or
only the unfinished cells' pulses (``PROG:LIST``, 6 bytes a pulse); and verifies only
the rows it pulsed (``READ:ROWS?``). Rows not read are read in full before the loop
ends (phase ``recheck``), so a cell that moved while it was not watched is still caught. Only board reads
are used; nothing here knows the chip's true state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from labctl_calibration.readout import Readout
from labctl_drivers.interface import ChipBoard

SET, RESET = 0, 1
STUCK_TRAVEL_US = 2.0  # net movement that tells a cell that moved from one that never could
NO_MOVE_AT_MAX_US = 1.0  # at full amplitude a working cell away from its rail moves by several µS; less,
# through a cell's 1/f read noise (about 0.5 µS RMS between two reads of a full PCM cell), is no move
SLOPE_BOUNDS_US_PER_MV = (1e-4, 0.2)


class WriteVerifyParams(BaseModel):
    """Parameters of one write-verify pass; a protocol file's ``[write_verify]`` table."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    tolerance_us: float = Field(1.5, gt=0, description="acceptance: |achieved - target| at the end")
    band_us: float = Field(0.75, gt=0, description="pulsing stops inside this tighter band")
    max_iterations: int = Field(40, ge=1, le=10_000)
    batch: Literal["array", "row", "auto"] = "array"  # auto: dense or sparse per iteration, by bytes
    width_ns: int = Field(100, ge=10, le=10_000)
    read_voltage: float = Field(0.2, gt=0, le=0.3)
    averaging: int = Field(256, ge=1, le=256)
    set_start_mv: int = Field(700, ge=1)
    set_max_mv: int = Field(2400, ge=1)
    reset_start_mv: int = Field(1000, ge=1)
    reset_max_mv: int = Field(3200, ge=1)
    initial_slope_us_per_mv: float = Field(0.008, gt=0)
    aim: float = Field(0.85, gt=0, le=1.5)
    min_move_us: float = Field(0.15, ge=0)
    stuck_after: int = Field(3, ge=1)
    max_relapses: int = Field(6, ge=0, le=1000)  # re-pulses of a cell that was in band and read out of tolerance
    # signed weights (--weights): re-target and program the partner of each stuck cell so its pair
    # still computes the weight (labctl_calibration.defects); no effect on conductance targets
    compensate_pairs: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> WriteVerifyParams:
        if self.band_us > self.tolerance_us:
            raise ValueError(f"band_us ({self.band_us}) must not exceed tolerance_us ({self.tolerance_us})")
        if self.set_start_mv > self.set_max_mv:
            raise ValueError(f"set_start_mv ({self.set_start_mv}) exceeds set_max_mv ({self.set_max_mv})")
        if self.reset_start_mv > self.reset_max_mv:
            raise ValueError(f"reset_start_mv ({self.reset_start_mv}) exceeds reset_max_mv ({self.reset_max_mv})")
        return self


class WriteVerifyObserver(Protocol):
    """Where measurements go as they are made (the run store, a progress bar)."""

    def on_read(
        self, phase: str, iteration: int, rows: np.ndarray, codes: np.ndarray, g_us: np.ndarray,
        t_s: float, temperature_k: float,
    ) -> None: ...

    def on_pulses(
        self, iteration: int, rows: np.ndarray, cols: np.ndarray, amplitude_mv: np.ndarray,
        width_ns: int, g_before_us: np.ndarray, g_after_us: np.ndarray, t_s: float,
    ) -> None: ...

    def on_iteration(self, iteration: int, active: int, total: int) -> None: ...


class NullObserver:
    def on_read(self, *args: object) -> None:
        pass

    def on_pulses(self, *args: object) -> None:
        pass

    def on_iteration(self, *args: object) -> None:
        pass


@dataclass(frozen=True)
class WriteVerifyResult:
    targets_us: np.ndarray
    achieved_us: np.ndarray  # last verify read
    pulses: np.ndarray
    converged: np.ndarray
    stuck: np.ndarray  # never moved, even at the largest allowed amplitude
    unreachable: np.ndarray  # moved, but no longer does at the largest amplitude: target out of its range
    included: np.ndarray  # the cells that were to be programmed
    iterations: int
    tolerance_us: float

    @property
    def cells(self) -> int:
        return int(self.included.sum())

    @property
    def error_us(self) -> np.ndarray:
        return self.achieved_us - self.targets_us

    @property
    def _usable(self) -> np.ndarray:
        return self.included & ~self.stuck

    @property
    def converged_fraction(self) -> float:
        """Converged cells among those not found stuck."""
        usable = self._usable
        return float(self.converged[usable].mean()) if usable.any() else 0.0

    @property
    def error_sigma_us(self) -> float:
        usable = self._usable
        return float(self.error_us[usable].std()) if usable.any() else float("nan")

    @property
    def max_abs_error_us(self) -> float:
        usable = self._usable
        return float(np.abs(self.error_us[usable]).max()) if usable.any() else float("nan")

    def merged(self, again: WriteVerifyResult, cells: np.ndarray) -> WriteVerifyResult:
        """This result with ``cells`` taken from a later pass over them (``again``): what
        each cell was last programmed to and read at, the pulses of both passes."""
        return replace(
            self, targets_us=np.where(cells, again.targets_us, self.targets_us),
            achieved_us=np.where(cells, again.achieved_us, self.achieved_us), pulses=self.pulses + again.pulses,
            converged=np.where(cells, again.converged, self.converged),
            unreachable=np.where(cells, again.unreachable, self.unreachable), stuck=self.stuck | again.stuck,
            iterations=self.iterations + again.iterations)


class _CellModel:
    """Per-cell, per-polarity threshold and slope estimates."""

    def __init__(self, shape: tuple[int, int], p: WriteVerifyParams) -> None:
        self.threshold = np.stack([np.full(shape, p.set_start_mv, float), np.full(shape, p.reset_start_mv, float)])
        self.slope = np.full((2, *shape), p.initial_slope_us_per_mv)
        self.max_mv = np.array([p.set_max_mv, p.reset_max_mv], dtype=float)

    def amplitude(self, polarity: np.ndarray, error_us: np.ndarray, aim: float) -> np.ndarray:
        theta = np.take_along_axis(self.threshold, polarity[None], 0)[0]
        slope = np.take_along_axis(self.slope, polarity[None], 0)[0]
        return np.minimum(theta + aim * np.abs(error_us) / slope, self.max_mv[polarity])

    def learn(self, polarity: np.ndarray, pulsed: np.ndarray, amplitude: np.ndarray, moved: np.ndarray,
              min_move: float) -> None:
        theta = np.take_along_axis(self.threshold, polarity[None], 0)[0]
        slope = np.take_along_axis(self.slope, polarity[None], 0)[0]
        still = pulsed & (moved < min_move)
        new_theta = np.where(still, np.maximum(theta, amplitude), theta)
        overdrive = amplitude - theta
        responded = pulsed & ~still & (overdrive > 0)
        observed = np.clip(moved / np.where(overdrive > 0, overdrive, 1.0), *SLOPE_BOUNDS_US_PER_MV)
        new_slope = np.where(responded, np.sqrt(slope * observed), slope)
        np.put_along_axis(self.threshold, polarity[None], new_theta[None], 0)
        np.put_along_axis(self.slope, polarity[None], new_slope[None], 0)


class WriteVerify:
    """Programs ``targets_us`` into the board's selected array."""

    def __init__(self, board: ChipBoard, readout: Readout, params: WriteVerifyParams,
                 observer: WriteVerifyObserver | None = None) -> None:
        self.board = board
        self.readout = readout
        self.p = params
        self.observer = observer or NullObserver()
        self._sparse = False  # PROG:LIST and READ:ROWS? in use (batch "auto" on a board listing LIST)

    def run(self, targets_us: np.ndarray, include: np.ndarray | None = None,
            known_stuck: np.ndarray | None = None) -> WriteVerifyResult:
        """Program the ``include``d cells (default: all); ``known_stuck`` ones are left alone.

        Ends when every included cell is in band, found stuck or unreachable, or at the
        iteration cap; a cell that cannot get there is reported, never looped on.
        """
        p = self.p
        shape = targets_us.shape
        rows_all = np.arange(shape[0])
        self.board.read_voltage = p.read_voltage
        self.board.averaging = p.averaging
        self.board.set_pulse_width(p.width_ns)

        self._sparse = p.batch == "auto" and "LIST" in self.board.capabilities()  # else dense, as "array"
        include = np.ones(shape, dtype=bool) if include is None else include.astype(bool)
        model = _CellModel(shape, p)
        pulses = np.zeros(shape, dtype=np.int32)
        at_max = np.zeros(shape, dtype=np.int32)
        stuck = np.zeros(shape, dtype=bool) if known_stuck is None else known_stuck.astype(bool) & include
        unreachable = np.zeros(shape, dtype=bool)
        verified = np.zeros(shape, dtype=bool)
        relapses = np.zeros(shape, dtype=np.int32)
        read_rows = rows_all if p.batch != "row" else np.flatnonzero(include.any(axis=1))
        g = self._read(read_rows, np.full(shape, np.nan), "initial", 0)
        g_initial = g.copy()
        unwatched = False  # some rows were not read since they were last pulsed (sparse verify)
        def unfinished(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Each cell's error and whether it still needs a pulse. Hysteresis: once a cell
            has read inside the band it is only pulsed again if a later read puts it outside
            the tolerance, and only ``max_relapses`` times: a cell's slow 1/f noise wanders
            for as long as anyone looks, so without a cap a large array never ends."""
            error = targets_us - g
            verified[...] |= np.abs(error) <= p.band_us
            limit = np.where(verified, p.tolerance_us, p.band_us)
            wanted = (np.abs(error) > limit) & include & ~stuck & ~unreachable
            return error, wanted & ~(verified & (relapses >= p.max_relapses))

        iteration = 0
        for iteration in range(1, p.max_iterations + 1):
            error, active = unfinished(g)
            if not active.any() and unwatched:  # before calling it done, look at every row once more
                g = self._read(rows_all, g, "recheck", iteration)
                unwatched = False
                error, active = unfinished(g)
            self.observer.on_iteration(iteration, int(active.sum()), int(include.sum()))
            if not active.any():
                iteration -= 1
                break
            polarity = np.where(error > 0, SET, RESET)
            amplitude = np.rint(model.amplitude(polarity, np.nan_to_num(error), p.aim))
            signed = np.where(active, np.where(polarity == SET, amplitude, -amplitude), 0).astype(np.int16)
            rows = np.flatnonzero(active.any(axis=1))
            t_pulse = self._program(signed, rows)
            g_before = g.copy()
            verify_rows = rows if p.batch == "row" or (self._sparse and len(rows) < shape[0]) else rows_all
            unwatched = p.batch == "auto" and len(verify_rows) < shape[0]  # the last read left rows out
            g = self._read(verify_rows, g, "verify", iteration)
            moved = (g - g_before) * np.where(polarity == SET, 1.0, -1.0)
            model.learn(polarity, active, amplitude, moved, p.min_move_us)
            pulses += active
            relapses += active & verified
            at_limit = active & (amplitude >= model.max_mv[polarity]) & (moved < max(p.min_move_us, NO_MOVE_AT_MAX_US))
            at_max = np.where(at_limit, at_max + 1, np.where(active, 0, at_max))
            # a cell that gives up at full amplitude is stuck if it never got anywhere,
            # and unreachable (its target lies outside its own range) if it travelled
            gave_up = at_max >= p.stuck_after
            travelled = np.abs(g - g_initial) > STUCK_TRAVEL_US
            stuck |= gave_up & ~travelled
            unreachable |= gave_up & travelled
            r, c = np.nonzero(active)
            self.observer.on_pulses(iteration, r, c, signed[r, c], p.width_ns, g_before[r, c], g[r, c], t_pulse)

        if unwatched:  # the iteration cap came first: the result is what the board reads now, every row
            # (numbered after the last iteration: that iteration may already hold a recheck before its pulses)
            g = self._read(rows_all, g, "recheck", iteration + 1)
        converged = (np.abs(targets_us - g) <= p.tolerance_us) & include & ~stuck
        return WriteVerifyResult(targets_us, g, pulses, converged, stuck, unreachable, include, iteration,
                                 p.tolerance_us)

    # ---- wire ----------------------------------------------------------------------

    def _program(self, amplitudes: np.ndarray, rows: np.ndarray) -> float:
        t_s, _ = self.board.clock_and_temperature()
        pulsed = amplitudes != 0  # every unfinished cell gets a non-zero amplitude (at least its threshold)
        if self._sparse and 6 * int(pulsed.sum()) < 2 * amplitudes.size:  # PROG:LIST is the fewer bytes
            r, c = np.nonzero(pulsed)
            self.board.program_list(r, c, amplitudes[r, c])
        elif self.p.batch in ("array", "auto"):
            self.board.program_array(amplitudes)
        else:
            for row in rows:
                self.board.program_row(int(row), amplitudes[row])
        return t_s

    def _read(self, rows: np.ndarray, g: np.ndarray, phase: str, iteration: int) -> np.ndarray:
        if len(rows) == g.shape[0] or self.p.batch == "array":
            codes = self.board.read_array()[rows]
        elif self.p.batch == "auto":
            codes = self.board.read_rows(rows)
        else:
            codes = np.stack([self.board.read_row(int(r)) for r in rows]) if len(rows) else np.empty((0, g.shape[1]))
        t_s, kelvin = self.board.clock_and_temperature()
        g = g.copy()
        g[rows] = self.readout.conductance_us(codes)
        self.observer.on_read(phase, iteration, rows, codes, g[rows], t_s, kelvin)
        return g
