"""Driver of the analogue compute board (PROTOCOL.md), for real boards and the twin alike.

Reads and programming are batched: a whole row or array travels as one binary block
per round trip, and every batched write carries its error-queue check in the same
message. Amplitudes are checked against the board's own limits (``PROG:LIM?``) and an
optional tighter safe operating area before they are sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl_drivers.errors import InstrumentError, ReplyError
from labctl_drivers.framing import encode_block
from labctl_drivers.instrument import ScpiInstrument, control
from labctl_drivers.safety import SafeOperatingArea, check_amplitudes, check_range, refuse
from labctl_drivers.transport import Transport

READ_VOLTAGE_MAX_V = 0.3  # PROTOCOL.md: 0 < V <= 0.3
SERIAL_SETTINGS = {"baudrate": 921600, "bytesize": 8, "parity": "N", "stopbits": 1}


@dataclass(frozen=True)
class Identity:
    maker: str
    model: str
    serial: str
    firmware: str

    @property
    def is_twin(self) -> bool:
        return self.model.upper().endswith("-TWIN")

    def __str__(self) -> str:
        return f"{self.maker},{self.model},{self.serial},{self.firmware}"


@dataclass(frozen=True)
class Geometry:
    arrays: int
    rows: int
    cols: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)


@dataclass(frozen=True)
class LoopRanges:
    """The closed loop's full scales: input code ±127 is ±``imax_ua``; output code
    ±(2^(bits−1)−1) is ±``vmax_v`` and means a rail."""

    imax_ua: float
    vmax_v: float
    bits: int

    @property
    def full_code(self) -> int:
        return 2 ** (self.bits - 1) - 1


@dataclass(frozen=True)
class PulseLimits:
    """Largest SET and RESET amplitude (both positive, mV) and widest pulse (ns)."""

    set_max_mv: int
    reset_max_mv: int
    width_max_ns: int

    def tighter(self, other: PulseLimits) -> PulseLimits:
        return PulseLimits(
            min(self.set_max_mv, other.set_max_mv),
            min(self.reset_max_mv, other.reset_max_mv),
            min(self.width_max_ns, other.width_max_ns),
        )


@dataclass(frozen=True)
class AdcInfo:
    bits: int
    full_scale_ua: float

    @property
    def lsb_ua(self) -> float:
        """One code of the bipolar converter, in µA."""
        return self.full_scale_ua / 2 ** (self.bits - 1)


class Board(ScpiInstrument):
    """The chip's test board, speaking PROTOCOL.md (one implementation of ``ChipBoard``)."""

    read_voltage = control(
        "READ:VOLT?", "READ:VOLT %s", "Read voltage, V.",
        values=lambda board: (1e-3, min(READ_VOLTAGE_MAX_V, board.soa.read_voltage_max_v)), unit=" V",
    )
    averaging = control("READ:AVG?", "READ:AVG %s", "On-board averages per read.", cast=int, values=(1, 256))
    pulse_width_ns = control(
        "PROG:WIDT?", "PROG:WIDT %s", "Width of following pulses, ns.", cast=int, values=(10, 10000), unit=" ns"
    )
    array = control("CHIP:ARR?", "CHIP:ARR %s", "Array all other commands address.", cast=int, values=(0, 255))

    def __init__(self, transport: Transport, name: str = "board", soa: SafeOperatingArea | None = None) -> None:
        super().__init__(transport, name)
        self.soa = soa or SafeOperatingArea()
        self._safe_limits = PulseLimits(self.soa.set_max_mv, self.soa.reset_max_mv, self.soa.width_max_ns)
        self._geometry: Geometry | None = None
        self._limits: PulseLimits | None = None
        self._capabilities: frozenset[str] | None = None
        self._is_twin: bool | None = None

    # ---- identity and geometry -----------------------------------------------------

    def identity(self) -> Identity:
        """``*IDN?``, judged inside the exchange: a reply without its four fields (a previous
        client's late block still on the line, say) is a damaged reply, discarded and asked
        again like any other, not a board that cannot identify."""

        def read() -> Identity:
            line = self.transport.read_line()
            try:
                parts = [p.strip() for p in line.decode("ascii").strip().split(",")]
            except UnicodeDecodeError:
                raise ReplyError(f"non-ASCII reply: {line[:60]!r}") from None
            if len(parts) != 4:
                raise ReplyError(f"*IDN? reply has {len(parts)} fields, expected 4: {','.join(parts)[:60]!r}")
            return Identity(*parts)

        return self._exchange("*IDN?", read)

    def geometry(self) -> Geometry:
        if self._geometry is None:
            arrays, rows, cols = self.query_values("CHIP:GEOM?", 3, int)
            if min(arrays, rows, cols) < 1:
                raise ReplyError(f"{self.name}: nonsensical geometry {arrays},{rows},{cols}")
            self._geometry = Geometry(arrays, rows, cols)
        return self._geometry

    def adc(self) -> AdcInfo:
        bits, full_scale = self.query_values("READ:ADC?", 2, float)
        if not (1 <= bits <= 16 and full_scale > 0):
            raise ReplyError(f"{self.name}: nonsensical ADC description {bits:g},{full_scale:g}")
        return AdcInfo(int(bits), full_scale)

    def capabilities(self) -> frozenset[str]:
        """What the board does beyond reading and programming (``MVM``, ``PROBE``, ``IMVM``,
        ``LIST``): calibration asks instead of assuming. A board that predates ``CHIP:CAP?``
        answers ``-113`` and is taken to have none of them."""
        if self._capabilities is None:
            try:
                reply = self.query("CHIP:CAP?")
            except InstrumentError as err:
                if err.code != -113:
                    raise
                reply = ""
            self._capabilities = frozenset(part.strip().upper() for part in reply.split(",") if part.strip())
        return self._capabilities

    def pulse_limits(self) -> PulseLimits:
        """The board's hard limits, tightened by the configured safe operating area."""
        if self._limits is None:
            set_max, reset_max, width_max = self.query_values("PROG:LIM?", 3, int)
            limits = PulseLimits(abs(set_max), abs(reset_max), width_max)
            self._limits = limits.tighter(self._safe_limits)
        return self._limits

    def temperature_k(self) -> float:
        return self.query_values("SENS:TEMP?", 1, float)[0]

    def clock_s(self) -> float:
        return self.query_values("SYST:TIME?", 1, float)[0]

    def clock_and_temperature(self) -> tuple[float, float]:
        """Board time and chip temperature in one round trip."""
        seconds, kelvin = self.query_values("SYST:TIME?;:SENS:TEMP?", 2, float, ";")
        return seconds, kelvin

    def let_time_pass(self, seconds: float) -> None:
        """A twin's virtual clock is advanced (``SIM:CLOCK:ADV``); a real board's time is the wall's."""
        if self._is_twin is None:
            self._is_twin = self.identity().is_twin
        if self._is_twin:
            self.write_checked(f"SIM:CLOCK:ADV {float(seconds)!r}")
        else:
            time.sleep(seconds)

    def reset(self) -> None:
        """``*RST``: read/pulse settings back to defaults; conductances are untouched."""
        self.write("*RST")
        self.check_errors("*RST")

    def make_safe(self) -> None:
        """The probe port open: nothing but the board's own idle lines touches the chip."""
        self.route_probe(None)

    # ---- reading -------------------------------------------------------------------

    def read_cell(self, row: int, col: int) -> int:
        self._check_address(row, col)
        return self.query_values(f"READ:CELL? {row},{col}", 1, int)[0]

    def read_row(self, row: int) -> np.ndarray:
        self._check_address(row, 0)
        return self.query_block(f"READ:ROW? {row}", self.geometry().cols)

    def route_probe(self, row: int | None, col: int | None = None) -> None:
        """Connect one cell to the probe port (``None``: disconnect), confirmed in the same round trip."""
        if row is None:
            command = "ROUT:PROB OFF"
        else:
            self._check_address(row, col)
            command = f"ROUT:PROB {row},{col}"
        # routing the same cell twice is harmless, so this may be retried like a query
        code, text = self._parse_error(self.query(command + ";:SYST:ERR?"))
        self._raise_if_error(code, text, command)

    def mvm(self, dac_codes: np.ndarray) -> np.ndarray:
        """One matrix-vector multiply: ``rows`` input codes (-127..127) in, ``cols`` ADC codes out."""
        g = self.geometry()
        inputs = np.asarray(dac_codes)
        if inputs.shape != (g.rows,) or np.abs(inputs).max(initial=0) > 127:
            raise refuse(self.name, f"MVM inputs must be {g.rows} codes within -127..127")
        header = b"MVM? " + encode_block(inputs.astype(np.int16))
        return self.query_block_message(header, "MVM?", g.cols)

    def solve_ranges(self) -> LoopRanges:
        """The closed loop's input and output full scales (``SOLV:IMAX?``, ``SOLV:VMAX?``)."""
        self._require("IMVM", "SOLV?")
        imax, vmax = self.query_values("SOLV:IMAX?;:SOLV:VMAX?", 2, float, ";")
        if not (imax > 0 and vmax > 0):
            raise ReplyError(f"{self.name}: nonsensical closed-loop ranges {imax:g} µA, {vmax:g} V")
        return LoopRanges(imax, vmax, self.adc().bits)

    def solve(self, input_codes: np.ndarray) -> np.ndarray:
        """One closed-loop solve (boards listing ``IMVM``): ``rows`` input codes of ``b``
        (-127..127) in, the settled outputs' ADC codes out. A code at full scale is a rail:
        the loop did not settle there, or the output was out of range."""
        g = self.geometry()
        inputs = np.asarray(input_codes)
        if inputs.shape != (g.rows,) or np.abs(inputs).max(initial=0) > 127:
            raise refuse(self.name, f"solve inputs must be {g.rows} codes within -127..127")
        self._require("IMVM", "SOLV?")
        header = b"SOLV? " + encode_block(inputs.astype(np.int16))
        return self.query_block_message(header, "SOLV?", g.cols)

    def read_array(self) -> np.ndarray:
        g = self.geometry()
        return self.query_block("READ:ARR?", g.rows * g.cols).reshape(g.rows, g.cols)

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """The listed rows (``READ:ROWS?``, boards listing ``LIST``), in the order listed."""
        g = self.geometry()
        listed = self._check_rows(rows)
        self._require("LIST", "READ:ROWS?")
        message = b"READ:ROWS? " + encode_block(listed.astype(np.int16))
        return self.query_block_message(message, "READ:ROWS?", listed.size * g.cols).reshape(listed.size, g.cols)

    # ---- programming ---------------------------------------------------------------

    def program_cell(self, row: int, col: int, amplitude_mv: int) -> None:
        self._check_address(row, col)
        self._check_amplitudes(np.array([amplitude_mv]))
        self.write_checked(f"PROG:CELL {row},{col},{int(amplitude_mv)}")

    def program_row(self, row: int, amplitudes_mv: np.ndarray) -> None:
        self._check_address(row, 0)
        amplitudes = self._check_amplitudes(amplitudes_mv, (self.geometry().cols,))
        self.write_block_checked(f"PROG:ROW {row},", amplitudes)

    def program_array(self, amplitudes_mv: np.ndarray) -> None:
        amplitudes = self._check_amplitudes(amplitudes_mv, self.geometry().shape)
        self.write_block_checked("PROG:ARR", amplitudes)

    def program_list(self, rows: np.ndarray, cols: np.ndarray, amplitudes_mv: np.ndarray) -> None:
        """Sparse pulses (``PROG:LIST``, boards listing ``LIST``): one per listed cell, 6 bytes
        each instead of 2 bytes for every cell of the array. Checked whole before the wire."""
        g = self.geometry()
        rows, cols = np.asarray(rows), np.asarray(cols)
        amplitudes = self._check_amplitudes(amplitudes_mv, rows.shape)
        if rows.ndim != 1 or cols.shape != rows.shape or rows.size == 0:
            raise refuse(self.name, "a pulse list needs rows, cols and amplitudes of one equal, non-zero length")
        if rows.min() < 0 or rows.max() >= g.rows or cols.min() < 0 or cols.max() >= g.cols:
            raise refuse(self.name, f"a listed cell lies outside the {g.rows}x{g.cols} array")
        if np.unique(rows.astype(np.int64) * g.cols + cols).size != rows.size:
            raise refuse(self.name, "a cell is listed twice")
        self._require("LIST", "PROG:LIST")
        triples = np.stack([rows.astype(np.int16), cols.astype(np.int16), amplitudes], axis=1)
        self.write_block_checked("PROG:LIST", triples)

    def set_mvm_gain(self, gain: int) -> None:
        """The MVM path's output range (``MVM:GAIN``): a power of two up to the row count."""
        rows = self.geometry().rows
        if not (isinstance(gain, int) and 1 <= gain <= rows and gain & (gain - 1) == 0):
            raise refuse(self.name, f"MVM gain {gain!r} is not a power of two in 1..{rows}")
        self.write_checked(f"MVM:GAIN {gain}")

    def set_pulse_width(self, width_ns: int) -> None:
        check_range(self.name, "pulse width", width_ns, 10, self.pulse_limits().width_max_ns, " ns")
        self.pulse_width_ns = width_ns

    # ---- checks before the wire ----------------------------------------------------

    def _require(self, capability: str, command: str) -> None:
        if capability not in self.capabilities():
            raise refuse(self.name, f"{command} needs a board that lists {capability} in CHIP:CAP?; this one lists "
                                    f"{','.join(sorted(self.capabilities())) or 'nothing'}")

    def _check_rows(self, rows: np.ndarray) -> np.ndarray:
        g = self.geometry()
        listed = np.asarray(rows)
        if listed.ndim != 1 or listed.size == 0 or not np.issubdtype(listed.dtype, np.integer):
            raise refuse(self.name, "rows must be a non-empty list of row numbers")
        if listed.min() < 0 or listed.max() >= g.rows:
            raise refuse(self.name, f"a listed row lies outside 0..{g.rows - 1}")
        if np.unique(listed).size != listed.size:
            raise refuse(self.name, "a row is listed twice")
        return listed

    def _check_address(self, row: int, col: int) -> None:
        g = self.geometry()
        if not (0 <= row < g.rows and 0 <= col < g.cols):
            raise refuse(self.name, f"cell ({row}, {col}) outside the {g.rows}x{g.cols} array")

    def _check_amplitudes(self, amplitudes_mv: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
        return check_amplitudes(self.name, amplitudes_mv, self.pulse_limits, shape).astype(np.int16)

    def snapshot(self) -> dict[str, Any]:
        g = self.geometry()
        limits = self.pulse_limits()
        adc = self.adc()
        return {
            **super().snapshot(),
            "safe_operating_area": self.soa.as_dict(),
            "geometry": [g.arrays, g.rows, g.cols],
            "adc": {"bits": adc.bits, "full_scale_ua": adc.full_scale_ua},
            "pulse_limits": {
                "set_max_mv": limits.set_max_mv,
                "reset_max_mv": limits.reset_max_mv,
                "width_max_ns": limits.width_max_ns,
            },
        }


def open_scpi_board(*, resource: str | None, options: dict[str, Any], soa: SafeOperatingArea,
                    timeout_s: float) -> Board:
    """The ``scpi`` entry of ``labctl.boards``: a board speaking PROTOCOL.md at a resource
    (``board = { driver = "scpi", resource = "TCPIP::...::SOCKET" }`` is ``board = "..."``)."""
    from labctl_drivers.errors import DriverError
    from labctl_drivers.transport import open_transport

    if not resource:
        raise DriverError("the scpi board driver needs a resource (a VISA resource, a serial port or tcp://host:port)")
    if options:
        raise DriverError(f"the scpi board driver takes no options; got {', '.join(sorted(options))}")
    return Board(open_transport(resource, timeout_s, SERIAL_SETTINGS, None, "board"), soa=soa)
