"""From ADC codes to conductance: the read-out model every calibration step shares.

The board reports ``code ≈ gain·I/LSB + offset`` per column (PROTOCOL.md ``READ:ADC?``).
Until read-out calibration has measured each column's gain and offset, the nominal
model (gain 1, offset 0) is the best a board alone can say; its error is what a
read-out calibration later removes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Readout:
    lsb_ua: float
    read_voltage: float
    gain: np.ndarray | float = 1.0  # per column
    offset: np.ndarray | float = 0.0  # per column, in codes
    calibrated: bool = field(default=False)

    def conductance_us(self, codes: np.ndarray) -> np.ndarray:
        """µS from codes; columns broadcast along the last axis."""
        current_ua = (np.asarray(codes, dtype=np.float64) - self.offset) / self.gain * self.lsb_ua
        return current_ua / self.read_voltage
