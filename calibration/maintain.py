"""Keeping a deployed matrix computing what was asked while it drifts: the maintenance loop.

A deployment calibrates its per-column output scale once; PCM conductances then fall as
``((t + t0) / t0)^-ν`` with ν spread from cell to cell, so the scale goes stale and the
cells part company. Every ``every_s`` until ``until_s`` (time since programming), a tick:

1. **looks**: probe MVMs of the deployed matrix (``vectors`` random signed inputs, each
   measured twice for the noise floor), judged against the intended matrix with three
   output scales: the one calibrated at tick 0 (what a deployment left alone computes),
   the previous tick's (what this loop's user computed until now), and one fitted afresh
   on half the probes (what re-compensation gives; judged on the other half);
2. **refreshes** (``refresh``): an averaged array read gives each column's drift factor
   ``f_c`` (median of G/target over the cells not yet refreshed, weighted by target²); a
   cell further than ``refresh_tolerance_us`` from ``f_c·target`` is re-programmed. A fresh
   cell drifts fastest at first, so it is aimed at where its column will be half an interval
   later: ``f_c·target·((every/2 + t0)/t0)^ν̂ · ((t_mid + t0)/(t + t0))^-ν̂``, with ν̂
   measured on the cells left alone since the first tick, per level (PCM's ν depends on the
   state; until two reads exist, between ticks or the prior). On differential pairs, the
   partner of a stuck cell (which does not drift) is aimed so the pair's *difference*
   follows the column (``s + f_c·(target − s)``, ``s`` the stuck cell as read).

The figure that matters is the re-compensated L2 error at each tick, before that tick's
refresh: the state the matrix was left in a whole interval ago. Everything is measured;
nothing here reads the chip's truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from labctl_calibration.accuracy import deployed_accuracy, output_scale, relative_l2
from labctl_calibration.defects import drifted_pair_levels
from labctl_calibration.mvm import auto_gain, measure_with_repeats
from labctl_calibration.readout import Readout
from labctl_calibration.write_verify import WriteVerify
from labctl_drivers.interface import ChipBoard


class MaintainParams(BaseModel):
    """A protocol file's ``[maintain]`` table."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    every_s: float = Field(3600.0, ge=1.0)
    until_s: float = Field(86_400.0, gt=0, le=365 * 86_400.0)
    vectors: int = Field(256, ge=8, le=100_000)  # probe inputs per tick: half fit the scale, half judge it
    averaging: int = Field(16, ge=1, le=256)
    reads: int = Field(4, ge=1, le=64)  # averaged array reads behind a refresh decision
    refresh: bool = True  # False: re-compensate only (the scale), never re-program
    refresh_tolerance_us: float = Field(1.5, gt=0)
    t0_s: float = Field(20.0, gt=0)  # the drift law's reference time, as the drift protocol's
    nu_prior: float = Field(0.05, ge=0, le=0.5)  # ν̂ until two ticks have measured it
    headroom: float = Field(0.5, gt=0, le=1)
    seed: int = Field(11, ge=0)

    @model_validator(mode="after")
    def _ticks(self) -> MaintainParams:
        if self.every_s > self.until_s:
            raise ValueError(f"every_s ({self.every_s:g}) exceeds until_s ({self.until_s:g}): no tick would run")
        return self

    @property
    def ticks(self) -> int:
        """Ticks after the first look (tick 0, at the start)."""
        return int(self.until_s // self.every_s)


@dataclass(frozen=True)
class Look:
    """One tick's probe MVMs, judged against the intended matrix."""

    l2_mean: float  # re-compensated: scale fitted now (half the probes), judged on the other half
    worst_output: float
    noise_floor_l2: float
    stale_l2_mean: float  # with the scale calibrated at tick 0
    previous_l2_mean: float  # with the previous tick's scale
    slope: np.ndarray
    intercept_ua: np.ndarray


def look(board: ChipBoard, readout: Readout, intended_us: np.ndarray, params: MaintainParams, rng: np.random.Generator,
         first_scale: tuple[np.ndarray, np.ndarray] | None, previous_scale: tuple[np.ndarray, np.ndarray] | None
         ) -> Look:
    rows = intended_us.shape[0]
    inputs = rng.integers(-127, 128, size=(params.vectors, rows))
    volts = inputs / 127.0 * readout.read_voltage
    test = np.arange(params.vectors) % 2 == 1
    board.averaging = params.averaging
    gain = auto_gain(board, readout, inputs[~test][:8], params.headroom)
    measured, repeat, _ = measure_with_repeats(board, readout, inputs, test, gain)
    deployed = deployed_accuracy(intended_us, volts, measured, repeat, test)
    if deployed is None:
        raise ValueError("the deployed matrix is all zeros: there is nothing to maintain")
    ideal = volts @ intended_us
    slope, intercept = output_scale(ideal, measured, ~test)
    first = first_scale or (slope, intercept)
    previous = previous_scale or first
    return Look(deployed.l2_mean, deployed.worst_output, deployed.noise_floor_l2,
                relative_l2(ideal[test], measured[test], *first), relative_l2(ideal[test], measured[test], *previous),
                slope, intercept)


@dataclass(frozen=True)
class Refresh:
    conductance_us: np.ndarray  # the averaged read the decision was made on
    column_factor: np.ndarray
    drifted: np.ndarray  # cells found out of tolerance (and re-programmed)
    aims_us: np.ndarray


def drift_exponent(previous_us: np.ndarray, now_us: np.ndarray, stable: np.ndarray, t_previous_s: float,
                   t_now_s: float, t0_s: float) -> float | None:
    """ν̂ from the cells that were left alone between two reads (``t`` since programming)."""
    span = np.log((t_now_s + t0_s) / (t_previous_s + t0_s))
    usable = stable & (previous_us > 0.5) & (now_us > 0.5)
    if span <= 0 or usable.sum() < 8:
        return None
    return float(-np.median(np.log(now_us[usable] / previous_us[usable])) / span)


def drift_exponents_by_level(first_us: np.ndarray, now_us: np.ndarray, stable: np.ndarray, levels_us: np.ndarray,
                             t_first_s: float, t_now_s: float, t0_s: float, bins: int = 8) -> np.ndarray | None:
    """Each cell's ν̂ from the cells programmed near its level, measured since the first read.

    PCM's ν depends on the state (aihwkit's law: 0.06 near 2 µS, 0.03 near 20 µS on 25 µS
    cells), so one median ν̂ aims a refreshed high cell more than 10 % too high for its next
    hour. Cells left alone since ``first_us`` are binned by the level they were programmed to
    (quantiles of ln level), each bin's median ν̂ taken, and every cell given the value at its
    own level (interpolated between bins, the end bins held beyond them). The span since
    the first read, not since the last tick, keeps a bin's estimate above the read noise."""
    span = np.log((t_now_s + t0_s) / (t_first_s + t0_s))
    usable = stable & (first_us > 0.05) & (now_us > 0.05) & (levels_us > 0)
    if span <= 0 or usable.sum() < 8:
        return None
    nu = -np.log(now_us[usable] / first_us[usable]) / span
    log_level = np.log(levels_us[usable])
    edges = np.unique(np.quantile(log_level, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, log_level, side="right") - 1, 0, max(len(edges) - 2, 0))
    centres, medians = [], []
    for b in np.unique(which):
        members = which == b
        if members.sum() >= 8:
            centres.append(float(np.median(log_level[members])))
            medians.append(float(np.median(nu[members])))
    if not centres:
        return None
    order = np.argsort(centres)
    return np.interp(np.log(np.maximum(levels_us, 1e-6)), np.asarray(centres)[order], np.asarray(medians)[order])


def column_drift_factors(conductance_us: np.ndarray, intended_us: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each column's drift factor: the median of G/target over its ``reference`` cells,
    weighted by target².

    A ratio is only as good as its cell's level: programming and read errors are absolute, so
    a cell aimed at 0.5 µS reads 50 % off its aim where one at 20 µS reads 1 % off. A plain
    median was the empty cells': on a chip of mostly zero weights it said 1.5 with no drift
    at all, and every weight was re-programmed up. A column with no reference cell takes the
    whole array's factor (1 when there is none either)."""
    ratio = np.where(intended_us > 0, conductance_us / np.where(intended_us > 0, intended_us, 1.0), np.nan)
    reference = reference & np.isfinite(ratio)
    weight = np.where(reference, intended_us, 0.0) ** 2
    fallback = _weighted_median(ratio[reference], weight[reference]) if reference.any() else 1.0
    return np.array([_weighted_median(ratio[reference[:, c], c], weight[reference[:, c], c])
                     if reference[:, c].any() else fallback for c in range(intended_us.shape[1])])


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def refresh(board: ChipBoard, readout: Readout, verify: WriteVerify, intended_us: np.ndarray, stable: np.ndarray,
            usable: np.ndarray, params: MaintainParams, t_s: float, nu: float | np.ndarray,
            window_us: tuple[float, float], conductance_us: np.ndarray, stuck_pairs: np.ndarray | None = None
            ) -> Refresh:
    """Re-program the cells that left their column's drift (``stable``: never refreshed, the
    cells whose ratio tells the column's factor). ``stuck_pairs``, for a deployment of
    differential pairs, marks the stuck cells: their partners keep the pair's difference
    on the column's drift, not their own level (``drifted_pair_levels``). ``nu`` may be one
    ν̂ or each cell's (``drift_exponents_by_level``): a fresh cell is aimed by it."""
    factor = column_drift_factors(conductance_us, intended_us, stable & usable)
    level = (drifted_pair_levels(intended_us, factor, conductance_us, stuck_pairs) if stuck_pairs is not None
             else factor * intended_us)
    drifted = (np.abs(conductance_us - level) > params.refresh_tolerance_us) & usable
    middle = t_s + params.every_s / 2
    ahead = ((params.every_s / 2 + params.t0_s) / params.t0_s) ** nu * ((middle + params.t0_s) / (t_s + params.t0_s)) ** -nu
    aims = np.clip(level * ahead, *window_us)
    if drifted.any():
        verify.run(aims, include=drifted)
    return Refresh(conductance_us, factor, drifted, aims)


def refresh_tick(board: ChipBoard, readout: Readout, verify: WriteVerify, aims_us: np.ndarray, usable: np.ndarray,
                 params: MaintainParams, t_s: float, window_us: tuple[float, float], state: dict[str, np.ndarray],
                 stuck_pairs: np.ndarray | None = None) -> tuple[Refresh, float | None]:
    """One tick's refresh, carrying what the next tick needs in ``state`` (``stable``: the
    cells never refreshed; ``read``/``read_t_s``: the last averaged read; ``first_read``/
    ``first_read_t_s``: the first, for ν̂ by level; ``nu``: the last ν̂). Returns the
    refresh and the ν̂ measured since the previous tick (None on the first)."""
    now = averaged_read(board, readout, params.reads)
    measured = (drift_exponent(state["read"], now, state["stable"], float(state["read_t_s"]), t_s, params.t0_s)
                if "read" in state else None)
    nu = measured if measured is not None else float(state.get("nu", params.nu_prior))
    by_level = (drift_exponents_by_level(state["first_read"], now, state["stable"], aims_us,
                                         float(state["first_read_t_s"]), t_s, params.t0_s)
                if "first_read" in state else None)
    fresh = refresh(board, readout, verify, aims_us, state["stable"], usable, params, t_s,
                    nu if by_level is None else by_level, window_us, now, stuck_pairs)
    if "first_read" not in state:
        state.update(first_read=now, first_read_t_s=np.array(t_s))
    state.update(read=now, read_t_s=np.array(t_s), stable=state["stable"] & ~fresh.drifted)
    if measured is not None:
        state["nu"] = np.array(measured)
    return fresh, measured


def averaged_read(board: ChipBoard, readout: Readout, reads: int) -> np.ndarray:
    board.averaging = 256
    return np.mean([readout.conductance_us(board.read_array()) for _ in range(reads)], axis=0)
