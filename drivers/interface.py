"""What calibration needs of a chip's board, as a typed interface any driver can implement.

labctl's own SCPI board (``labctl_drivers.board.Board``) is one implementation; the ArC TWO
driver (``labctl_drivers.arc2``) another; a lab's own driver, registered through the
``labctl.boards`` entry point group (``labctl_drivers.plugins``), a third. Calibration
holds a :class:`ChipBoard` and nothing more specific, so it runs on any of them.

Everything beyond reading and programming is optional and listed by ``capabilities()``
(the names of PROTOCOL.md's ``CHIP:CAP?``): calibration asks instead of assuming, and a
board refuses an operation it does not list before anything reaches the instrument.

- ``LIST``: sparse operations, ``read_rows`` and ``program_list``;
- ``MVM``: analogue matrix-vector multiplies, ``mvm`` and ``set_mvm_gain``;
- ``PROBE``: one cell routed to an external SMU, ``route_probe`` (read-out calibration);
- ``IMVM``: the closed-loop solve, ``solve_ranges`` and ``solve``;
- ``AMMETER``: reads are the instrument's own calibrated current measurement, not codes of
  per-column converters: there is no read-out gain or offset to calibrate.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from labctl_drivers.board import AdcInfo, Geometry, Identity, LoopRanges, PulseLimits
from labctl_drivers.instrument import LinkStats

CAPABILITIES = frozenset({"LIST", "MVM", "PROBE", "IMVM", "AMMETER"})


@runtime_checkable
class ChipBoard(Protocol):
    """A chip's test board, as calibration uses it.

    Reads return integer codes of the converter ``adc()`` describes (an ammeter's
    currents quantised to its ``lsb_ua``); amplitudes are signed millivolts (positive
    SET, negative RESET), checked against ``pulse_limits()`` before the instrument sees them.
    """

    name: str
    retries: int  # how often a lost or damaged reply is asked for again
    link: LinkStats  # what the link carried and lost: the summary's wire bytes
    read_voltage: float  # V, settable, within the safe operating area
    averaging: int  # conversions averaged per read, settable
    array: int  # which array the other operations address, settable

    # ---- identity, geometry, limits -------------------------------------------------
    def identity(self) -> Identity: ...
    def identify(self) -> str: ...
    def geometry(self) -> Geometry: ...
    def adc(self) -> AdcInfo: ...
    def capabilities(self) -> frozenset[str]: ...
    def pulse_limits(self) -> PulseLimits: ...
    def snapshot(self) -> dict[str, Any]: ...

    # ---- clock and temperature ------------------------------------------------------
    def clock_s(self) -> float: ...
    def temperature_k(self) -> float: ...
    def clock_and_temperature(self) -> tuple[float, float]: ...
    def let_time_pass(self, seconds: float) -> None:
        """Wait on the board's own clock: a twin's virtual clock, a real bench's wall clock."""

    # ---- reading ---------------------------------------------------------------------
    def read_array(self) -> np.ndarray: ...
    def read_row(self, row: int) -> np.ndarray: ...
    def read_rows(self, rows: np.ndarray) -> np.ndarray: ...  # LIST
    def read_cell(self, row: int, col: int) -> int: ...

    # ---- programming -----------------------------------------------------------------
    def set_pulse_width(self, width_ns: int) -> None: ...
    def program_array(self, amplitudes_mv: np.ndarray) -> None: ...
    def program_row(self, row: int, amplitudes_mv: np.ndarray) -> None: ...
    def program_list(self, rows: np.ndarray, cols: np.ndarray, amplitudes_mv: np.ndarray) -> None: ...  # LIST
    def program_cell(self, row: int, col: int, amplitude_mv: int) -> None: ...

    # ---- optional capabilities -------------------------------------------------------
    def mvm(self, dac_codes: np.ndarray) -> np.ndarray: ...  # MVM
    def set_mvm_gain(self, gain: int) -> None: ...  # MVM
    def route_probe(self, row: int | None, col: int | None = None) -> None: ...  # PROBE
    def solve_ranges(self) -> LoopRanges: ...  # IMVM
    def solve(self, input_codes: np.ndarray) -> np.ndarray: ...  # IMVM

    # ---- leaving ---------------------------------------------------------------------
    def reset(self) -> None: ...
    def make_safe(self) -> None:
        """No voltage on the chip beyond what idling leaves (probe port open, lines grounded)."""
    def close(self) -> None: ...


def missing_members(board: object) -> list[str]:
    """The members of :class:`ChipBoard` a driver's board lacks (``isinstance`` only says whether)."""
    return sorted(name for name in MEMBERS if not hasattr(board, name))


MEMBERS = tuple(sorted({*ChipBoard.__annotations__,
                        *(name for name, value in vars(ChipBoard).items()
                          if callable(value) and not name.startswith("_"))}))
