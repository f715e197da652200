"""The safe operating area of a chip: limits checked before any byte reaches an instrument.

Every chip declares its own in ``lab.toml``. Drivers hold it and refuse, with a clear
error that is also logged, anything outside it: the check happens in the driver, so
no caller (a protocol, a notebook, a bug) can get around it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

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
