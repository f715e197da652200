"""The twin's chip: crossbar state, periphery (per-column ADCs), clock and sensor.

The model is fully determined by ``(preset, seed, geometry)``: fabrication (cell
parameters, ADC trims, stuck map) and run-time noise come from separate streams of
one seed, so two twins built alike are the same chip, and the same sequence of
commands gives the same replies.

``ground_truth()`` is for tests only; nothing on the wire exposes it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from sims.physics import (
    PRESETS,
    CellParams,
    DeviceParams,
    apply_pulses,
    draw_cells,
    initial_conductance,
    read_noise_sigma,
)

ADC_BITS = 12
ADC_FULL_SCALE_UA = 8.0  # bipolar: codes span ±full scale
ADC_GAIN_SPREAD = 0.005  # per-column σ of gain error after the board's factory trim
ADC_OFFSET_SPREAD_LSB = 2.0
ROW_READ_TIME_S = 1e-6
PULSE_OVERHEAD_S = 200e-9
CHIP_TEMPERATURE_K = 300.0
SENSOR_NOISE_K = 0.05


@dataclass(frozen=True)
class GroundTruth:
    """What the chip really is; read only by tests."""

    conductance_us: np.ndarray  # (arrays, rows, cols)
    stuck_low: np.ndarray
    stuck_high: np.ndarray
    adc_gain: np.ndarray  # (arrays, cols)
    adc_offset_lsb: np.ndarray  # (arrays, cols)


class VirtualClock:
    """Seconds of chip time; advances only by modelled durations and explicit jumps."""

    def __init__(self) -> None:
        self._now = 0.0

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._now += seconds


class ChipModel:
    """A crossbar chip with per-column ADCs, driven by the board handler."""

    def __init__(
        self,
        preset: str = "pcm",
        seed: int = 0,
        rows: int = 256,
        cols: int = 256,
        arrays: int = 1,
        adc_gain_spread: float = ADC_GAIN_SPREAD,
        adc_offset_spread_lsb: float = ADC_OFFSET_SPREAD_LSB,
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
        if rows < 1 or cols < 1 or arrays < 1:
            raise ValueError("geometry must be positive")
        self.preset = preset
        self.seed = seed
        self.params: DeviceParams = PRESETS[preset]
        self.shape = (arrays, rows, cols)
        fab_seq, run_seq = np.random.SeedSequence([seed, arrays, rows, cols]).spawn(2)
        fab = np.random.default_rng(fab_seq)
        self._rng = np.random.default_rng(run_seq)
        self.cells = draw_cells(self.params, self.shape, fab)
        self._g = initial_conductance(self.params, self.cells, fab)
        self.adc_gain = 1.0 + adc_gain_spread * fab.standard_normal((arrays, cols))
        self.adc_offset = adc_offset_spread_lsb * fab.standard_normal((arrays, cols))
        self.adc_bits = ADC_BITS
        self.adc_full_scale_ua = ADC_FULL_SCALE_UA
        self.clock = VirtualClock()
        self.temperature_k = CHIP_TEMPERATURE_K

    @property
    def arrays(self) -> int:
        return self.shape[0]

    @property
    def rows(self) -> int:
        return self.shape[1]

    @property
    def cols(self) -> int:
        return self.shape[2]

    @property
    def lsb_ua(self) -> float:
        return self.adc_full_scale_ua / 2 ** (self.adc_bits - 1)

    def read_codes(self, array: int, rows: slice, v_read: float, averages: int) -> np.ndarray:
        """ADC codes of the given rows: noisy cell currents through each column's ADC.

        The board averages ``averages`` conversions and reports the rounded mean, as
        on-board averaging does; quantisation and saturation apply to the result.
        """
        g = self._g[array, rows]
        sigma = read_noise_sigma(g, self.params, self.params.g_max_us) / np.sqrt(averages)
        g_read = g + sigma * self._rng.standard_normal(g.shape)
        current_ua = v_read * g_read  # V · µS = µA
        gain = self.adc_gain[array]
        offset = self.adc_offset[array]
        codes = np.rint(gain * current_ua / self.lsb_ua + offset)
        top = 2 ** (self.adc_bits - 1)
        n_rows = g.shape[0]
        self.clock.advance(n_rows * ROW_READ_TIME_S * averages)
        return np.clip(codes, -top, top - 1).astype(np.int16)

    def program(self, array: int, rows: slice, amplitude_mv: np.ndarray, width_ns: float) -> None:
        """One pulse per addressed cell (0 mV cells are left alone)."""
        region = self._g[array, rows]
        cell_view = _slice_cells(self.cells, array, rows)
        self._g[array, rows] = apply_pulses(
            region, amplitude_mv.astype(np.float64), width_ns, self.params, cell_view, self._rng
        )
        n_rows = region.shape[0]
        self.clock.advance(n_rows * (width_ns * 1e-9 + PULSE_OVERHEAD_S))

    def sensor_temperature(self) -> float:
        return float(self.temperature_k + SENSOR_NOISE_K * self._rng.standard_normal())

    def ground_truth(self) -> GroundTruth:
        return GroundTruth(
            conductance_us=self._g.copy(),
            stuck_low=self.cells.stuck_low.copy(),
            stuck_high=self.cells.stuck_high.copy(),
            adc_gain=self.adc_gain.copy(),
            adc_offset_lsb=self.adc_offset.copy(),
        )


def _slice_cells(cells: CellParams, array: int, rows: slice) -> CellParams:
    """The cell parameters of one array's rows, as a CellParams of that shape."""
    return replace(cells, **{f.name: getattr(cells, f.name)[array, rows] for f in fields(cells)})
