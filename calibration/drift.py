"""Drift characterisation: reads at log-spaced times, per-cell power-law fits, temperature
acceleration, and drift compensation of MVM outputs.

Model fitted (the one published PCM studies and aihwkit use): after programming,
``G(t) = G0 · (τ/τ_ref)^(-ν)`` where τ is the *drift time*: real time at the reference
temperature, and real time multiplied by ``a(T) = exp(Ea/k · (1/T_ref - 1/T))`` when hot.

- ν, G0 per cell: least squares of ``ln G`` against ``ln τ`` over the first (reference
  temperature) segment, from ``fit_start_s`` on; fit quality is R².
- a(T_k) per later segment: with each cell's ν known, the drift time at the segment's
  start τ_s and its rate a_k are found from the curvature of ``ln G + ν ln(τ_s + a_k Δt)``
  (constant in Δt for the right values): only ``u = τ_s / a_k`` is identifiable, and τ_s
  is the previous segment's end plus the settling transient integrated over the polled
  temperatures with the current Ea; Ea and the a_k are iterated to agreement.
- Ea: least squares of ``ln a_k`` against ``(1/T_ref - 1/T_k)/k`` through the origin.
- Compensation: a global and a per-column factor from reference rows read now against
  the same rows read right after programming, applied to expected MVM outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labctl_calibration.readout import Readout
from labctl_drivers.interface import ChipBoard

BOLTZMANN_EV = 8.617333262e-5


class DriftParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    duration_s: float = Field(43200.0, gt=0, le=90 * 86400)  # per temperature
    reads: int = Field(60, ge=3, le=10_000)  # per temperature, log-spaced
    first_read_s: float = Field(10.0, gt=0, le=86400)
    temperatures_k: tuple[Annotated[float, Field(gt=0, le=2000)], ...] = Field((300.0,), min_length=1, max_length=32)
    fit_start_s: float = Field(60.0, ge=0, le=90 * 86400)
    # the power law's reference time: G = G0 · ((t + t0) / t0)^-ν, t from the end of programming, as
    # aihwkit's PCM model applies it (Nandakumar et al. 2019: t0 = 20 s); 0 gives the bare t^-ν
    t0_s: float = Field(20.0, ge=0, le=86400)
    averaging: int = Field(16, ge=1, le=256)
    settle_tolerance_k: float = Field(0.5, gt=0, le=50)
    settle_poll_s: float = Field(10.0, gt=0, le=3600)
    settle_timeout_s: float = Field(7200.0, gt=0, le=7 * 86400)
    # once within tolerance, keep waiting this long (the chip's own lag: a few thermal time constants):
    # the last half kelvin changes the read current by ~0.5 % over minutes, more than the drift of the
    # first reads, and biased every acceleration low (0.25 eV for 0.30) when reads began at the edge
    settle_hold_s: float = Field(300.0, ge=0, le=86400)
    heater_range: int = Field(3, ge=1, le=3)  # Lake Shore loop 1 range set with every set point: 1 low .. 3 high
    reference_rows: int = Field(16, ge=1, le=4096)  # rows read as the compensation reference
    fit_cells: int = Field(4096, ge=16, le=1_000_000)  # cells used to find each segment's acceleration
    mvm_vectors: int = Field(32, ge=2, le=100_000)
    seed: int = Field(0, ge=0)


class SetPointNotReached(RuntimeError):
    """The chip did not settle at a segment's temperature: its reads would be at the
    wrong temperature, so the segment is not measured and the step fails."""


def log_schedule(first_s: float, duration_s: float, reads: int) -> np.ndarray:
    return np.geomspace(first_s, duration_s, reads)


@dataclass
class Segment:
    temperature_k: float
    start_s: float  # board time when the reads of this segment began (settled)
    settle_trace: list[tuple[float, float]]  # (board time, kelvin) while settling
    times_s: list[float] = field(default_factory=list)
    conductance_us: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class DriftFit:
    nu: np.ndarray
    g0_us: np.ndarray  # fitted conductance at fit_start_s after programming
    r2: np.ndarray
    nu_se: np.ndarray  # each cell's ν to its fit's standard error (1/f read noise about the power law)
    accelerations: list[float]  # per segment; 1 for the reference
    activation_ev: float | None


@dataclass(frozen=True)
class Compensation:
    global_factor: float
    column_factor: np.ndarray
    raw: dict[str, float]
    global_compensated: dict[str, float]
    column_compensated: dict[str, float]


def fit_power_law(log_t: np.ndarray, log_g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per cell (cells along axis 1) ``ln G = c - ν ln t``; returns ν, c, R² and ν's standard
    error. The error is what lets a spread of ν be told from the fits' own scatter: at a low
    level the read noise makes the fitted ν scatter as widely as the cells' ν do."""
    x = log_t - log_t.mean()
    y = log_g - log_g.mean(axis=0)
    slope = (x[:, None] * y).sum(axis=0) / (x**2).sum()
    intercept = log_g.mean(axis=0) - slope * log_t.mean()
    residual = y - slope * x[:, None]
    total = (y**2).sum(axis=0)
    squares = (residual**2).sum(axis=0)
    r2 = 1 - squares / np.where(total > 0, total, 1)
    se = np.sqrt(squares / max(len(x) - 2, 1) / (x**2).sum())
    return -slope, intercept, r2, se


def _segment_u(delta_s: np.ndarray, log_g: np.ndarray, nu: np.ndarray) -> float:
    """The ``u = (τ_s + t0) / a`` that makes ``ln G + ν ln(u + Δt)`` flattest over the segment.

    Fitted on the cells' *mean* log conductance against their mean ν, not cell by cell: each
    cell's ν is known only to its fit's error (1/f noise, about ±0.01 on ν ≈ 0.05-0.1), and
    a per-cell cost grows with ``Σ e_ν² · var(ln(u + Δt))``, which pushes u up and the
    acceleration down. The mean of the fitted exponents is unbiased and the mean law is
    exact, ``⟨ln G⟩ = ⟨c⟩ − ν̄ ln(u + Δt)`` for one u.
    """
    mean_log_g = log_g.mean(axis=1)
    mean_nu = float(nu.mean())

    def cost(log_u: float) -> float:
        y = mean_log_g + mean_nu * np.log(np.exp(log_u) + delta_s)
        return float(y.var())

    grid = np.linspace(np.log(1.0), np.log(1e9), 121)
    best = grid[int(np.argmin([cost(v) for v in grid]))]
    low, high = best - 0.2, best + 0.2
    golden = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = high - golden * (high - low), low + golden * (high - low)
        if cost(a) < cost(b):
            high = b
        else:
            low = a
    return float(np.exp((low + high) / 2))


def fit_drift(segments: list[Segment], programmed_s: float, params: DriftParams, rng: np.random.Generator,
              usable: np.ndarray) -> DriftFit:
    reference = segments[0]
    times = np.array(reference.times_s) - programmed_s
    stack = np.log(np.maximum(np.stack(reference.conductance_us), 1e-3))
    window = times >= params.fit_start_s
    flat = stack.reshape(len(times), -1)
    nu, intercept, r2, se = fit_power_law(np.log(times[window] + params.t0_s), flat[window])
    g0 = np.exp(intercept - nu * np.log((params.fit_start_s or times[window][0]) + params.t0_s))
    shape = reference.conductance_us[0].shape
    accelerations = [1.0]
    activation = None
    if len(segments) > 1:
        # every usable cell, not those whose fit looked good: choosing cells by their fitted ν or R²
        # picks the ones whose noise raised ν, and a too-high mean ν reads as too little acceleration
        pool = np.flatnonzero(usable.ravel())
        cells = rng.choice(pool, size=min(params.fit_cells, len(pool)), replace=False)
        u = []
        for segment in segments[1:]:
            delta = np.array(segment.times_s) - segment.start_s
            logs = np.log(np.maximum(np.stack(segment.conductance_us).reshape(len(delta), -1)[:, cells], 1e-3))
            u.append(_segment_u(delta, logs, nu[cells]))
        activation = 0.0
        for _ in range(8):  # settle transients depend on Ea, Ea on the accelerations: iterate
            accelerations = [1.0]
            tau_end = reference.times_s[-1] - programmed_s
            for segment, u_k in zip(segments[1:], u):
                tau_start = tau_end + _settle_drift_time(segment, activation, reference.temperature_k)
                a_k = (tau_start + params.t0_s) / u_k  # u = (τ_start + t0) / a: the law counts from -t0
                accelerations.append(a_k)
                tau_end = tau_start + a_k * (segment.times_s[-1] - segment.start_s)
            x = np.array([(1 / reference.temperature_k - 1 / s.temperature_k) / BOLTZMANN_EV for s in segments[1:]])
            y = np.log(np.array(accelerations[1:]))
            if not (x * x).sum() > 0:  # every segment at the reference temperature: no Arrhenius slope to fit
                return DriftFit(nu.reshape(shape), g0.reshape(shape), r2.reshape(shape), se.reshape(shape), accelerations, None)
            activation = float((x * y).sum() / (x * x).sum())
    return DriftFit(nu.reshape(shape), g0.reshape(shape), r2.reshape(shape), se.reshape(shape), accelerations, activation)


def _settle_drift_time(segment: Segment, activation_ev: float, reference_k: float) -> float:
    trace = segment.settle_trace
    total = 0.0
    for (t0, k0), (t1, k1) in zip(trace, trace[1:]):
        kelvin = (k0 + k1) / 2
        total += (t1 - t0) * np.exp(activation_ev / BOLTZMANN_EV * (1 / reference_k - 1 / kelvin))
    return total


def mvm_errors(board: ChipBoard, readout: Readout, expected_from: np.ndarray, factors: dict[str, np.ndarray | float],
               params: DriftParams) -> dict[str, dict[str, float]]:
    """Measured MVM outputs now against expectations from ``expected_from`` (µS) scaled by each factor."""
    g = board.geometry()
    rng = np.random.default_rng(params.seed)
    inputs = rng.integers(-127, 128, size=(params.mvm_vectors, g.rows))
    volts = inputs / 127.0 * readout.read_voltage
    codes = np.stack([board.mvm(v) for v in inputs]).astype(float)
    measured = (codes - readout.offset) / readout.gain * readout.lsb_ua * g.rows
    full_scale = float(readout.read_voltage * expected_from.sum(axis=0).max())
    result = {}
    for name, factor in factors.items():
        error = measured - volts @ (expected_from * factor)
        result[name] = {"rms_fs": float(np.sqrt(np.mean(error**2)) / full_scale),
                        "worst_fs": float(np.abs(error).max() / full_scale)}
    return result


def compensation(board: ChipBoard, readout: Readout, baseline_us: np.ndarray, now_us: np.ndarray,
                 reference_rows: np.ndarray, usable: np.ndarray, params: DriftParams) -> Compensation:
    """Correction factors from the reference rows only, and the MVM errors they leave."""
    ratio = now_us[reference_rows] / np.maximum(baseline_us[reference_rows], 1e-3)
    keep = usable[reference_rows]
    # no usable reference cell (a tiny or badly stuck array): nothing to compensate from, so no compensation
    global_factor = float(np.median(ratio[keep])) if keep.any() else 1.0
    column = np.array([np.median(ratio[:, c][keep[:, c]]) if keep[:, c].any() else global_factor
                       for c in range(ratio.shape[1])])
    errors = mvm_errors(board, readout, baseline_us,
                        {"raw": 1.0, "global": global_factor, "column": column[None, :]}, params)
    return Compensation(global_factor, column, errors["raw"], errors["global"], errors["column"])


Recorded = Callable[[int, int], "tuple[float, np.ndarray] | None"]


def settle(board: ChipBoard, kelvin: float, set_temperature: Callable[[float], None], read_temperature: Callable[[], float],
           wait: Callable[[float], None], params: DriftParams, what: str, consequence: str,
           hold: bool = True) -> list[list[float]]:
    """Ask for ``kelvin`` and poll until the chip has stayed within tolerance for
    ``settle_hold_s`` (``hold``: the first segment's temperature was settled before the cells
    were programmed, and holding there would only delay the reads due seconds after
    programming); returns the (board time, kelvin) trace. Not reached within the timeout: ``SetPointNotReached``, since
    anything measured then would be labelled with a temperature the chip never had."""
    set_temperature(kelvin)
    deadline = board.clock_s() + params.settle_timeout_s
    trace: list[list[float]] = []
    within_since: float | None = None
    while True:
        now, measured = board.clock_s(), read_temperature()
        trace.append([now, measured])
        if abs(measured - kelvin) <= params.settle_tolerance_k:
            within_since = now if within_since is None else within_since
            if not hold or now - within_since >= params.settle_hold_s:
                return trace
        else:
            within_since = None
        if now >= deadline:
            raise SetPointNotReached(
                f"{what}: the chip reached {measured:.2f} K, not {kelvin:g} K ±{params.settle_tolerance_k:g} K, "
                f"within settle_timeout_s = {params.settle_timeout_s:g} s (heater range {params.heater_range}); "
                f"{consequence}")
        wait(params.settle_poll_s)


def run_segments(board: ChipBoard, readout: Readout, params: DriftParams, wait: Callable[[float], None],
                 set_temperature: Callable[[float], None] | None, read_temperature: Callable[[], float] | None,
                 journal: dict, save_journal: Callable[[], None], recorded: Recorded,
                 on_read: Callable[[int, int, np.ndarray, np.ndarray, float], None] | None = None,
                 after_segment: Callable[[int, Segment], None] | None = None) -> list[Segment]:
    """Step the temperatures, wait for each to settle, and read at log-spaced times.

    Resumable: ``journal`` (saved by ``save_journal`` after every change) holds the
    programming time, each segment's settled start and the time of every read done;
    ``recorded(k, i)`` returns a read already in the store (time, conductances) or
    None. A read that reached the store but not the journal is taken from the store,
    so nothing is read twice and nothing is lost; the schedule stays anchored to the
    programming time and to each segment's settled start.
    """
    board.averaging = params.averaging
    board.read_voltage = readout.read_voltage
    programmed_s = journal["programmed_s"]
    entries = journal.setdefault("segments", [])
    segments = []
    for k, kelvin in enumerate(params.temperatures_k):
        if k >= len(entries):
            trace: list[list[float]] = []
            if set_temperature is not None and read_temperature is not None:
                trace = settle(board, kelvin, set_temperature, read_temperature, wait, params,
                               f"drift segment {k + 1}", "no reads were taken at it", hold=k > 0)
            entries.append({"temperature_k": kelvin, "start_s": board.clock_s() if k else programmed_s,
                            "settle_trace": trace, "times_s": []})
            save_journal()
        entry = entries[k]
        segment = Segment(kelvin, entry["start_s"], [tuple(point) for point in entry["settle_trace"]])
        for i, offset in enumerate(log_schedule(params.first_read_s, params.duration_s, params.reads)):
            found = recorded(k, i)
            if found is None:
                delay = entry["start_s"] + offset - board.clock_s()
                if delay > 0:
                    wait(delay)
                codes = board.read_array()
                time_s = board.clock_s()
                g = readout.conductance_us(codes).astype(np.float32)
                if on_read is not None:
                    on_read(k, i, codes, g, time_s)
            else:
                time_s, g = found
            if i >= len(entry["times_s"]):
                entry["times_s"].append(time_s)
                save_journal()
            segment.times_s.append(entry["times_s"][i])
            segment.conductance_us.append(g)
        segments.append(segment)
        if after_segment is not None:
            after_segment(k, segment)
    return segments
