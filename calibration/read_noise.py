"""Read noise: repeated reads of the whole array, per cell and per column, against conductance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labctl_calibration.readout import Readout
from labctl_drivers.interface import ChipBoard


class ReadNoiseParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    reads: int = Field(32, ge=2, le=4096)
    averaging: int = Field(1, ge=1, le=256)
    bins: int = Field(6, ge=1, le=100)


@dataclass(frozen=True)
class ReadNoiseResult:
    mean_us: np.ndarray  # per cell
    sigma_us: np.ndarray  # per cell, of one read at the given averaging
    averaging: int
    bins: int

    @property
    def column_sigma_us(self) -> np.ndarray:
        return np.median(self.sigma_us, axis=0)

    def versus_conductance(self) -> list[dict[str, float]]:
        """Median σ (absolute and relative) in equal-width bins of mean conductance.

        Equal widths, not quantiles: after the read-out step the array is mostly low,
        with the reference rows spread over the window, and those rows are what shows
        the noise across the range.
        """
        edges = np.linspace(self.mean_us.min(), self.mean_us.max(), self.bins + 1)
        table = []
        for low, high in zip(edges[:-1], edges[1:]):
            inside = (self.mean_us >= low) & (self.mean_us <= high)
            if inside.any():
                sigma = float(np.median(self.sigma_us[inside]))
                g = float(np.median(self.mean_us[inside]))
                table.append({"g_us": g, "sigma_us": sigma, "relative": sigma / g if g > 0 else float("nan")})
        return table


def measure_read_noise(board: ChipBoard, readout: Readout, params: ReadNoiseParams, observer=None) -> ReadNoiseResult:
    """``observer.on_read(phase, i, rows, codes, g, t_s, kelvin)`` receives every read."""
    board.averaging = params.averaging
    board.read_voltage = readout.read_voltage
    mean = squares = None  # Welford's running mean and sum of squared deviations: memory of one read, not all
    for i in range(params.reads):
        codes = board.read_array()
        g = np.asarray(readout.conductance_us(codes), dtype=float)
        if observer is not None:
            t_s, kelvin = board.clock_and_temperature()
            observer.on_read("noise", i, np.arange(codes.shape[0]), codes, g, t_s, kelvin)
        if mean is None:
            mean, squares = g.copy(), np.zeros_like(g)
            continue
        delta = g - mean
        mean += delta / (i + 1)
        squares += delta * (g - mean)
    return ReadNoiseResult(mean, np.sqrt(squares / (params.reads - 1)), params.averaging, params.bins)
