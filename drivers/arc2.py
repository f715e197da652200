"""ArC TWO (ArC Instruments' open platform for memristor crossbars) as a labctl board, through
its Python bindings ``pyarc2`` (``pip install 'labctl[arc2]'``).

labctl's operations map onto the instrument's own:

- reads: ``read_all`` (the whole array) and ``read_slice`` (one word line) at the read
  voltage, repeated ``averaging`` times and averaged here (ArC TWO measures each line's
  current itself: the board lists ``AMMETER``, so there is no converter to calibrate); the
  currents are reported as codes of a 16-bit converter of ``current_full_scale_ua``;
- programming: one ``pulse_one`` per cell with a non-zero amplitude, queued and sent with
  one ``execute``; SET is ``set_polarity`` (+1: a positive voltage on the bit line);
- the MVM: the word lines set to the input voltages with ``config_channels`` (the bit
  lines at 0 V), the bit lines' currents taken with ``read_slice_open``;
- idle and exit: ``ground_all`` then ``finalise_operation(IdleMode.SoftGnd)``.

Channels follow pyarc2's documented standard 32×32 mapping: word lines on channels 0–15
and 32–47, bit lines on 16–31 and 48–63. Every amplitude, width and read voltage is checked
against the chip's safe operating area and the instrument's range (±10 V on the standard
output range) before pyarc2 is called.

Tried without hardware only: against a stand-in that has ``pyarc2.Instrument``'s real
signatures (an autospec) over the twin's chip model (``labctl.rigs.standins``). The channel
mapping, the sign of the currents ``read_all`` returns and the ``read_slice_open`` MVM are
as pyarc2's documentation states them and have not been checked on an instrument.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from labctl_drivers.board import AdcInfo, Geometry, Identity, LoopRanges, PulseLimits
from labctl_drivers.errors import DriverError
from labctl_drivers.instrument import LinkStats
from labctl_drivers.safety import SafeOperatingArea, check_amplitudes, check_range, refuse

SIDE = 32  # the standard daughterboard's crossbar
STANDARD_RANGE_MV = 10_000  # OutputRange.STD: ±10 V
WIDTH_MIN_NS = 100  # shortest pulse this driver sends (arbitrary-voltage pulses)
ADC_BITS = 16
CAPABILITIES = frozenset({"AMMETER", "LIST", "MVM"})


def word_channel(row: int) -> int:
    return row if row < 16 else row + 16


def bit_channel(col: int) -> int:
    return col + 16 if col < 16 else col + 32


WORD_CHANNELS = np.array([word_channel(r) for r in range(SIDE)], dtype=np.uint64)
BIT_CHANNELS = np.array([bit_channel(c) for c in range(SIDE)], dtype=np.uint64)


class Arc2Board:
    """A 32×32 crossbar on an ArC TWO, behind the chip's safe operating area."""

    retries = 0  # pyarc2 reports failures as exceptions; nothing here is asked twice

    def __init__(self, instrument: Any, pyarc2: Any, *, soa: SafeOperatingArea | None = None, name: str = "board",
                 serial: str = "0", model: str = "ArC TWO", current_full_scale_ua: float = 10.0,
                 set_polarity: int = 1, clock: Callable[[], float] | None = None,
                 wait: Callable[[float], None] | None = None,
                 temperature: Callable[[], float] | None = None) -> None:
        if set_polarity not in (1, -1):
            raise DriverError(f"arc2: set_polarity must be 1 or -1, not {set_polarity!r}")
        if not current_full_scale_ua > 0:
            raise DriverError(f"arc2: current_full_scale_ua must be positive, not {current_full_scale_ua!r}")
        self.instrument, self._arc = instrument, pyarc2
        self.soa = soa or SafeOperatingArea()
        self.name = name
        self.link = LinkStats()  # pyarc2 does not expose the bytes it moves
        self._identity = Identity("ArC Instruments", model, serial, f"libarc2 {getattr(pyarc2, 'LIBARC2_VERSION', '?')}")
        self._adc = AdcInfo(ADC_BITS, float(current_full_scale_ua))
        self._polarity = set_polarity
        started = time.monotonic()
        self._clock = clock or (lambda: time.monotonic() - started)
        self._wait = wait or time.sleep
        self._temperature = temperature
        self._limits = PulseLimits(min(STANDARD_RANGE_MV, self.soa.set_max_mv),
                                   min(STANDARD_RANGE_MV, self.soa.reset_max_mv), self.soa.width_max_ns)
        self._reset_settings()
        instrument.set_channel_range(np.arange(64, dtype=np.uint64), pyarc2.OutputRange.STD)
        instrument.ground_all()
        instrument.execute()

    def _reset_settings(self) -> None:
        self._read_voltage, self._averaging, self._width_ns, self._mvm_gain = 0.2, 1, 100, 1

    # ---- settings (checked here, kept here: ArC TWO takes them per operation) ----------

    @property
    def read_voltage(self) -> float:
        return self._read_voltage

    @read_voltage.setter
    def read_voltage(self, volts: float) -> None:
        check_range(self.name, "read voltage", volts, 1e-3, self.soa.read_voltage_max_v, " V")
        self._read_voltage = float(volts)

    @property
    def averaging(self) -> int:
        return self._averaging

    @averaging.setter
    def averaging(self, count: int) -> None:
        check_range(self.name, "averaging", count, 1, 256)
        self._averaging = int(count)

    @property
    def array(self) -> int:
        return 0

    @array.setter
    def array(self, index: int) -> None:
        if index != 0:
            raise refuse(self.name, f"array {index}: an ArC TWO daughterboard holds one crossbar (array 0)")

    def set_pulse_width(self, width_ns: int) -> None:
        check_range(self.name, "pulse width", width_ns, WIDTH_MIN_NS, self._limits.width_max_ns, " ns")
        self._width_ns = int(width_ns)

    # ---- identity, geometry, limits ----------------------------------------------------

    def identity(self) -> Identity:
        return self._identity

    def identify(self) -> str:
        return str(self._identity)

    def geometry(self) -> Geometry:
        return Geometry(1, SIDE, SIDE)

    def adc(self) -> AdcInfo:
        return self._adc

    def capabilities(self) -> frozenset[str]:
        return CAPABILITIES

    def pulse_limits(self) -> PulseLimits:
        return self._limits

    def snapshot(self) -> dict[str, Any]:
        return {"idn": self.identify(), "driver": "arc2", "read_voltage": self._read_voltage,
                "averaging": self._averaging, "pulse_width_ns": self._width_ns, "mvm_gain": self._mvm_gain,
                "set_polarity": self._polarity, "current_full_scale_ua": self._adc.full_scale_ua,
                "safe_operating_area": self.soa.as_dict(), "geometry": [1, SIDE, SIDE],
                "pulse_limits": vars(self._limits)}

    # ---- clock and temperature ---------------------------------------------------------

    def clock_s(self) -> float:
        return float(self._clock())

    def temperature_k(self) -> float:
        """ArC TWO has no chip thermometer: NaN unless one was given."""
        return float(self._temperature()) if self._temperature is not None else float("nan")

    def clock_and_temperature(self) -> tuple[float, float]:
        return self.clock_s(), self.temperature_k()

    def let_time_pass(self, seconds: float) -> None:
        self._wait(seconds)

    # ---- reading -----------------------------------------------------------------------

    def _codes(self, current_a: np.ndarray) -> np.ndarray:
        full = 2 ** (ADC_BITS - 1) - 1
        codes = np.rint(np.asarray(current_a, dtype=np.float64) * 1e6 / self._adc.lsb_ua)
        return np.clip(codes, -full, full).astype(np.int32)

    def _averaged(self, read: Callable[[], np.ndarray]) -> np.ndarray:
        total = np.zeros(0)
        for k in range(self._averaging):
            value = np.asarray(read(), dtype=np.float64)
            total = value if k == 0 else total + value
        return total / self._averaging

    def read_array(self) -> np.ndarray:
        order = self._arc.BiasOrder.Rows
        currents = self._averaged(lambda: self.instrument.read_all(self._read_voltage, order))
        if currents.shape != (SIDE, SIDE):
            raise DriverError(f"{self.name}: read_all returned shape {currents.shape}, expected {SIDE}x{SIDE}")
        return self._codes(currents)

    def read_row(self, row: int) -> np.ndarray:
        self._check_address(row, 0)
        channel = int(WORD_CHANNELS[row])
        currents = self._averaged(lambda: self.instrument.read_slice(channel, self._read_voltage))
        if currents.shape != (SIDE,):
            raise DriverError(f"{self.name}: read_slice returned shape {currents.shape}, expected {SIDE}")
        return self._codes(currents)

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        listed = np.asarray(rows)
        if listed.ndim != 1 or listed.size == 0 or not np.issubdtype(listed.dtype, np.integer):
            raise refuse(self.name, "rows must be a non-empty list of row numbers")
        if listed.min() < 0 or listed.max() >= SIDE or np.unique(listed).size != listed.size:
            raise refuse(self.name, f"rows must be distinct, within 0..{SIDE - 1}")
        return np.stack([self.read_row(int(row)) for row in listed])

    def read_cell(self, row: int, col: int) -> int:
        self._check_address(row, col)
        low, high = int(WORD_CHANNELS[row]), int(BIT_CHANNELS[col])
        value = self._averaged(lambda: np.asarray(self.instrument.read_one(low, high, self._read_voltage)))
        return int(self._codes(value))

    # ---- programming -------------------------------------------------------------------

    def program_array(self, amplitudes_mv: np.ndarray) -> None:
        amplitudes = self._check_amplitudes(amplitudes_mv, (SIDE, SIDE))
        rows, cols = np.nonzero(amplitudes)
        self._pulse(rows, cols, amplitudes[rows, cols])

    def program_row(self, row: int, amplitudes_mv: np.ndarray) -> None:
        self._check_address(row, 0)
        amplitudes = self._check_amplitudes(amplitudes_mv, (SIDE,))
        cols = np.nonzero(amplitudes)[0]
        self._pulse(np.full(cols.size, row), cols, amplitudes[cols])

    def program_list(self, rows: np.ndarray, cols: np.ndarray, amplitudes_mv: np.ndarray) -> None:
        rows, cols = np.asarray(rows), np.asarray(cols)
        amplitudes = self._check_amplitudes(amplitudes_mv, rows.shape)
        if rows.ndim != 1 or cols.shape != rows.shape or rows.size == 0:
            raise refuse(self.name, "a pulse list needs rows, cols and amplitudes of one equal, non-zero length")
        if rows.min() < 0 or rows.max() >= SIDE or cols.min() < 0 or cols.max() >= SIDE:
            raise refuse(self.name, f"a listed cell lies outside the {SIDE}x{SIDE} array")
        if np.unique(rows.astype(np.int64) * SIDE + cols).size != rows.size:
            raise refuse(self.name, "a cell is listed twice")
        self._pulse(rows, cols, amplitudes)

    def program_cell(self, row: int, col: int, amplitude_mv: int) -> None:
        self._check_address(row, col)
        amplitude = self._check_amplitudes(np.array([amplitude_mv]))
        self._pulse(np.array([row]), np.array([col]), amplitude)

    def _pulse(self, rows: np.ndarray, cols: np.ndarray, amplitudes_mv: np.ndarray) -> None:
        """One queued ``pulse_one`` per cell, sent with one ``execute`` and waited for."""
        for row, col, amplitude in zip(rows.tolist(), cols.tolist(), amplitudes_mv.tolist(), strict=True):
            if amplitude:
                volts = self._polarity * amplitude / 1000.0
                self.instrument.pulse_one(int(WORD_CHANNELS[row]), int(BIT_CHANNELS[col]), volts, self._width_ns)
        self.instrument.execute()
        self.instrument.wait()

    # ---- MVM ---------------------------------------------------------------------------

    def set_mvm_gain(self, gain: int) -> None:
        if not (isinstance(gain, int) and 1 <= gain <= SIDE and gain & (gain - 1) == 0):
            raise refuse(self.name, f"MVM gain {gain!r} is not a power of two in 1..{SIDE}")
        self._mvm_gain = gain

    def mvm(self, dac_codes: np.ndarray) -> np.ndarray:
        """Word lines at ``code/127 · read voltage``, bit lines at 0 V, their currents read open;
        reported as PROTOCOL.md's MVM codes (``gain/rows · I / LSB``)."""
        inputs = np.asarray(dac_codes)
        if inputs.shape != (SIDE,) or np.abs(inputs).max(initial=0) > 127:
            raise refuse(self.name, f"MVM inputs must be {SIDE} codes within -127..127")
        volts = inputs.astype(np.float64) * (self._read_voltage / 127.0)

        def once() -> np.ndarray:
            config = [(int(ch), float(v)) for ch, v in zip(WORD_CHANNELS, volts, strict=True)]
            self.instrument.config_channels(config, 0.0)
            self.instrument.execute()
            return self.instrument.read_slice_open(BIT_CHANNELS, True)

        currents = self._averaged(once)
        if currents.shape != (SIDE,):
            raise DriverError(f"{self.name}: read_slice_open returned shape {currents.shape}, expected {SIDE}")
        return self._codes(currents * (self._mvm_gain / SIDE))

    # ---- what an ArC TWO does not have -------------------------------------------------

    def route_probe(self, row: int | None, col: int | None = None) -> None:
        if row is not None:
            raise refuse(self.name, "an ArC TWO has no probe port (PROBE): it measures currents itself")

    def solve_ranges(self) -> LoopRanges:
        raise refuse(self.name, "an ArC TWO has no closed loop (IMVM)")

    def solve(self, input_codes: np.ndarray) -> np.ndarray:
        raise refuse(self.name, "an ArC TWO has no closed loop (IMVM)")

    # ---- leaving -----------------------------------------------------------------------

    def reset(self) -> None:
        self._reset_settings()
        self.make_safe()

    def make_safe(self) -> None:
        """Every channel grounded and back to arbitrary-voltage operation."""
        self.instrument.ground_all()
        self.instrument.execute()
        self.instrument.finalise_operation(self._arc.IdleMode.SoftGnd)

    def close(self) -> None:
        self.make_safe()

    # ---- checks before the instrument -------------------------------------------------

    def _check_address(self, row: int, col: int) -> None:
        if not (0 <= row < SIDE and 0 <= col < SIDE):
            raise refuse(self.name, f"cell ({row}, {col}) outside the {SIDE}x{SIDE} array")

    def _check_amplitudes(self, amplitudes_mv: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
        return check_amplitudes(self.name, amplitudes_mv, lambda: self._limits, shape).astype(np.int32)


def open_arc2(*, resource: str | None, options: dict[str, Any], soa: SafeOperatingArea,
              timeout_s: float) -> Arc2Board:
    """The ``arc2`` entry of ``labctl.boards``: ``board = { driver = "arc2", options = {
    port = 0, firmware = "/path/to/fw.bin" } }`` (``port`` from ``pyarc2.find_ids()``)."""
    try:
        import pyarc2
    except ImportError:
        raise DriverError("the arc2 board driver needs pyarc2: pip install 'labctl[arc2]'") from None
    known = {"port", "firmware", "current_full_scale_ua", "set_polarity"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DriverError(f"arc2: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "firmware" not in options:
        raise DriverError("arc2: options.firmware (the path of the firmware to load) is required")
    port = int(options.get("port", 0))
    ids = list(pyarc2.find_ids())
    if port not in ids:
        raise DriverError(f"arc2: no ArC TWO at port {port}; found {ids or 'none'}")
    try:
        instrument = pyarc2.Instrument(port, str(options["firmware"]))
    except pyarc2.ArC2Error as err:
        raise DriverError(f"arc2: could not open the ArC TWO at port {port}: {err}") from None
    return Arc2Board(instrument, pyarc2, soa=soa, serial=f"port{port}",
                     current_full_scale_ua=float(options.get("current_full_scale_ua", 10.0)),
                     set_polarity=int(options.get("set_polarity", 1)))
