"""Device equations of a phase-change memory cell, vectorised over whole arrays.

Every function takes per-cell parameter arrays and returns new arrays; none keeps
state, so the chip model (``sims.chip``) owns the state and these stay testable in
isolation. Units: conductance in µS, amplitude in mV, width in ns, time in s.

Reference for the statistics: the PCM inference model of IBM's aihwkit
(Nandakumar et al., ICECS 2019; ``PCMLikeNoiseModel``), whose read-noise law is
``q_s = min(0.0088 / (G/Gmax)**0.65, 0.2)`` (relative). The pulse response is a
soft-bounded, threshold-switching model: a SET pulse above a cell's threshold
crystallises part of the remaining amorphous volume (so steps shrink as G nears the
top of the window), a RESET pulse amorphises part of the crystalline volume (steps
shrink near the bottom), and a RESET above the melt amplitude amorphises the whole
plug at once, as PCM does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFERENCE_WIDTH_NS = 100.0


@dataclass(frozen=True)
class DeviceParams:
    """Population statistics a chip's cells are drawn from (one preset)."""

    g_max_us: float = 25.0
    g_max_spread: float = 0.04  # relative σ of each cell's top of window
    g_min_us: float = 0.1
    set_threshold_mv: float = 800.0
    set_threshold_spread_mv: float = 60.0
    set_scale_mv: float = 1000.0
    set_strength_us: float = 8.0  # median step at 1 scale above threshold, empty cell
    reset_threshold_mv: float = 1200.0
    reset_threshold_spread_mv: float = 80.0
    reset_scale_mv: float = 1000.0
    reset_strength_us: float = 14.0
    reset_melt_mv: float = 3600.0  # full amorphisation above this
    strength_spread: float = 0.25  # lognormal σ of per-cell strengths (device-to-device)
    cycle_noise: float = 0.3  # relative σ of each step (cycle-to-cycle)
    cycle_noise_floor_us: float = 0.08  # absolute σ added to every pulse that switches
    width_exponent: float = 0.5
    read_noise_scale: float = 1.0
    stuck_low_rate: float = 0.003
    stuck_high_rate: float = 0.002
    initial_g_us: tuple[float, float] = (0.3, 3.0)  # as-fabricated range (mostly amorphous)


@dataclass(frozen=True)
class CellParams:
    """Each cell's own draw from ``DeviceParams`` (device-to-device variation)."""

    g_max: np.ndarray
    g_min: np.ndarray
    set_threshold: np.ndarray
    set_strength: np.ndarray
    reset_threshold: np.ndarray
    reset_strength: np.ndarray
    stuck_low: np.ndarray
    stuck_high: np.ndarray

    @property
    def stuck(self) -> np.ndarray:
        return self.stuck_low | self.stuck_high


def draw_cells(params: DeviceParams, shape: tuple[int, ...], rng: np.random.Generator) -> CellParams:
    """Draw per-cell parameters; stuck-low and stuck-high are disjoint."""
    lognormal = lambda median: median * rng.lognormal(0.0, params.strength_spread, shape)  # noqa: E731
    u = rng.random(shape)
    stuck_low = u < params.stuck_low_rate
    stuck_high = (u >= params.stuck_low_rate) & (u < params.stuck_low_rate + params.stuck_high_rate)
    return CellParams(
        g_max=params.g_max_us * (1.0 + params.g_max_spread * rng.standard_normal(shape)),
        g_min=np.full(shape, params.g_min_us),
        set_threshold=params.set_threshold_mv + params.set_threshold_spread_mv * rng.standard_normal(shape),
        set_strength=lognormal(params.set_strength_us),
        reset_threshold=params.reset_threshold_mv
        + params.reset_threshold_spread_mv * rng.standard_normal(shape),
        reset_strength=lognormal(params.reset_strength_us),
        stuck_low=stuck_low,
        stuck_high=stuck_high,
    )


def initial_conductance(
    params: DeviceParams, cells: CellParams, rng: np.random.Generator
) -> np.ndarray:
    """As-fabricated state; stuck cells sit at their rail."""
    low, high = params.initial_g_us
    g = rng.uniform(low, high, cells.g_max.shape)
    g = np.where(cells.stuck_low, cells.g_min, g)
    return np.where(cells.stuck_high, cells.g_max * 0.97, g)


def _overdrive(amplitude_mv: np.ndarray, threshold: np.ndarray, scale: float) -> np.ndarray:
    return np.clip((amplitude_mv - threshold) / scale, 0.0, None)


def apply_pulses(
    g: np.ndarray,
    amplitude_mv: np.ndarray,
    width_ns: float,
    params: DeviceParams,
    cells: CellParams,
    rng: np.random.Generator,
) -> np.ndarray:
    """Conductance after one pulse per cell (amplitude 0 = no pulse).

    The step depends on the present state (soft bounds), on amplitude above the
    cell's own threshold and on width, is asymmetric between SET and RESET, and
    carries multiplicative and additive cycle-to-cycle noise. Stuck cells ignore
    pulses.
    """
    width_factor = (width_ns / REFERENCE_WIDTH_NS) ** params.width_exponent
    g_max, g_min = cells.g_max, cells.g_min
    span = g_max - g_min
    fill = np.clip((g - g_min) / span, 0.0, 1.0)

    set_drive = _overdrive(amplitude_mv, cells.set_threshold, params.set_scale_mv) * width_factor
    reset_drive = (
        _overdrive(-amplitude_mv, cells.reset_threshold, params.reset_scale_mv) * width_factor
    )
    # Saturating in drive: a long or strong pulse cannot move more than what is left.
    set_step = span * (1.0 - fill) * -np.expm1(-set_drive * cells.set_strength / span)
    reset_step = span * fill * -np.expm1(-reset_drive * cells.reset_strength / span)
    step = set_step - reset_step

    switched = (set_drive > 0) | (reset_drive > 0)
    noise = params.cycle_noise * rng.standard_normal(g.shape)
    floor = params.cycle_noise_floor_us * rng.standard_normal(g.shape)
    g_new = g + np.where(switched, step * (1.0 + noise) + floor, 0.0)

    melted = -amplitude_mv >= params.reset_melt_mv
    g_new = np.where(melted, g_min * (1.0 + 0.2 * np.abs(floor)), g_new)
    g_new = np.clip(g_new, g_min, g_max)
    return np.where(cells.stuck, g, g_new)


def read_noise_sigma(g: np.ndarray, params: DeviceParams, g_ref_us: float) -> np.ndarray:
    """σ of one read in µS: aihwkit's PCM law, relative noise rising as G falls."""
    relative = np.clip(g / g_ref_us, 1e-3, None)
    q_s = np.minimum(0.0088 / relative**0.65, 0.2)
    return params.read_noise_scale * q_s * np.abs(g)


PRESETS: dict[str, DeviceParams] = {"pcm": DeviceParams()}
