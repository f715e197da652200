"""The safe operating area of a chip: limits checked before any byte reaches an instrument.

Every chip declares its own in ``lab.toml``. Drivers hold it and refuse, with a clear
error that is also logged, anything outside it: the check happens in the driver, so
no caller (a protocol, a notebook, a bug) can get around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from labctl_drivers.errors import LimitError

log = logging.getLogger("labctl.safety")


@dataclass(frozen=True)
class SafeOperatingArea:
    set_max_mv: int = 2500
    reset_max_mv: int = 3500
    width_max_ns: int = 1000
    read_voltage_max_v: float = 0.3
    smu_voltage_max_v: float = 0.5
    smu_current_limit_max_a: float = 1e-3
    temperature_min_k: float = 250.0
    temperature_max_k: float = 400.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def refuse(instrument: str, what: str) -> LimitError:
    """Log a refusal and return the error to raise."""
    message = f"{instrument}: refused before the wire: {what}"
    log.warning(message)
    return LimitError(message)


def check_range(instrument: str, name: str, value: float, low: float, high: float, unit: str = "") -> None:
    if not (low <= value <= high):
        raise refuse(instrument, f"{name} {value:g}{unit} outside the safe range {low:g}..{high:g}{unit}")


def check_amplitudes(instrument: str, amplitudes_mv: np.ndarray, limits: Callable[[], Any],
                     shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Pulse amplitudes (mV, positive SET, negative RESET) of the expected shape, whole and
    within ``limits()`` (its ``set_max_mv``, ``reset_max_mv``: asked only once the shape is
    right, so a malformed request costs no query); the array as given, or the refusal raised."""
    amplitudes = np.asarray(amplitudes_mv)
    if shape is not None and amplitudes.shape != shape:
        raise refuse(instrument, f"amplitudes of shape {amplitudes.shape}, expected {shape}")
    if not np.issubdtype(amplitudes.dtype, np.integer):
        if not np.all(np.isfinite(amplitudes)) or np.any(amplitudes != np.round(amplitudes)):
            raise refuse(instrument, "amplitudes must be whole millivolts")
    high, low = int(amplitudes.max(initial=0)), int(amplitudes.min(initial=0))
    bounds = limits()
    if high > bounds.set_max_mv or -low > bounds.reset_max_mv:
        raise refuse(instrument, f"amplitude range {low}..{high} mV beyond the safe limits "
                                 f"-{bounds.reset_max_mv}..+{bounds.set_max_mv} mV")
    return amplitudes
