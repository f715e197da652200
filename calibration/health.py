"""Health check: is every cell alive? One SET and one RESET test pulse over the whole array.

A working cell moves under at least one of the two (a full cell hardly under SET, an
empty one hardly under RESET); a cell that moves under neither is flagged dead. The
flag is advice: write-verify finds stuck cells by itself and the two maps are compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labctl_calibration.readout import Readout
from labctl_drivers.interface import ChipBoard


class HealthParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    set_pulse_mv: int = Field(1400, ge=0)
    reset_pulse_mv: int = Field(1700, ge=0)
    width_ns: int = Field(100, ge=10)
    averaging: int = Field(256, ge=1, le=256)
    min_move_us: float = Field(0.5, gt=0)


@dataclass(frozen=True)
class HealthResult:
    initial_us: np.ndarray
    set_move_us: np.ndarray
    reset_move_us: np.ndarray
    dead: np.ndarray
    temperature_k: float

    @property
    def dead_fraction(self) -> float:
        return float(self.dead.mean())


def check_health(board: ChipBoard, readout: Readout, params: HealthParams, observer=None) -> HealthResult:
    """The observer (``on_read``, ``on_pulses``, as write-verify's) receives every read and pulse."""
    shape = board.geometry().shape
    board.averaging = params.averaging
    board.read_voltage = readout.read_voltage
    board.set_pulse_width(params.width_ns)
    _, temperature = board.clock_and_temperature()

    def read(label: str) -> np.ndarray:
        codes = board.read_array()
        g = readout.conductance_us(codes)
        if observer is not None:
            t_s, kelvin = board.clock_and_temperature()
            observer.on_read(label, 0, np.arange(shape[0]), codes, g, t_s, kelvin)
        return g

    def pulse(amplitude_mv: int, before: np.ndarray, label: str) -> np.ndarray:
        t_s, _ = board.clock_and_temperature()
        amplitudes = np.full(shape, amplitude_mv, dtype=np.int16)
        board.program_array(amplitudes)
        after = read(label)
        if observer is not None:
            rows, cols = np.indices(shape)
            observer.on_pulses(0, rows.ravel(), cols.ravel(), amplitudes.ravel(), params.width_ns,
                               before.ravel(), after.ravel(), t_s)
        return after

    initial = read("health")
    after_set = pulse(params.set_pulse_mv, initial, "health-set")
    after_reset = pulse(-params.reset_pulse_mv, after_set, "health-reset")
    set_move = after_set - initial
    reset_move = after_set - after_reset
    dead = (set_move < params.min_move_us) & (reset_move < params.min_move_us)
    return HealthResult(initial, set_move, reset_move, dead, temperature)
