"""The twin's test board: PROTOCOL.md's ACB command set over one ``ChipModel``.

This is the firmware side. It validates every parameter before touching the chip,
so a rejected command leaves the chip exactly as it was.
"""

from __future__ import annotations

import numpy as np

from labctl_sims.chip import ChipModel
from labctl_sims.scpi import (
    Param,
    ScpiDevice,
    ScpiError,
    as_block,
    as_float,
    as_int,
    as_text,
    expect_count,
    in_range,
)

FIRMWARE_VERSION = "0.1.0"
WIRE_BYTES_PER_S = 1.0e6  # USB CDC link: the nominal 921600 baud does not bind over USB
SET_MAX_MV = 3000
RESET_MAX_MV = 4000
WIDTH_MIN_NS = 10
WIDTH_MAX_NS = 10000
READ_VOLT_MAX = 0.3
AVG_MAX = 256
DEFAULTS = {"read_volt": 0.2, "averages": 1, "width_ns": 100, "probe": None, "array": 0, "mvm_gain": 1}
CAPABILITIES = ("MVM", "PROBE", "LIST")  # CHIP:CAP?: what this board does beyond reading and programming
LOOP_CAPABILITY = "IMVM"  # the closed-loop solve, on boards whose chip has one


class BoardTwin(ScpiDevice):
    """Answers the board protocol for a simulated chip."""

    def __init__(self, chip: ChipModel, serial: str = "TWIN-0001") -> None:
        super().__init__()
        self.chip = chip
        self.serial = serial
        self.faults = None  # a FaultInjector when served on a real transport
        self.max_block_bytes = 6 * chip.rows * chip.cols  # PROG:LIST of every cell, the largest block it takes
        self._reset_settings()
        c = self.command
        c("*IDN?", self._idn)
        c("*RST", lambda p: self._no_params(p) or self._reset_settings())
        c("CHIP:GEOMetry?", lambda p: self._no_params(p) or "{},{},{}".format(*chip.shape))
        c("CHIP:ARRay", self._select_array)
        c("CHIP:ARRay?", lambda p: self._no_params(p) or str(self.array))
        c("CHIP:CAPabilities?", lambda p: self._no_params(p) or ",".join(self.capabilities))
        c("SENSe:TEMPerature?", lambda p: self._no_params(p) or f"{chip.sensor_temperature():.4f}")
        c("SYSTem:TIME?", lambda p: self._no_params(p) or f"{chip.clock.now():.9f}")
        c("READ:VOLTage", self._set_read_volt)
        c("READ:VOLTage?", lambda p: self._no_params(p) or f"{self.read_volt:g}")
        c("READ:AVG", self._set_averages)
        c("READ:AVG?", lambda p: self._no_params(p) or str(self.averages))
        c("READ:CELL?", self._read_cell)
        c("READ:ROW?", self._read_row)
        c("READ:ARRay?", self._read_array)
        c("READ:ROWS?", self._read_rows)
        c("READ:ADC?", lambda p: self._no_params(p) or f"{chip.adc_bits},{chip.adc_full_scale_ua:g}")
        c("PROGram:WIDTh", self._set_width)
        c("PROGram:WIDTh?", lambda p: self._no_params(p) or str(self.width_ns))
        c("PROGram:CELL", self._program_cell)
        c("PROGram:ROW", self._program_row)
        c("PROGram:ARRay", self._program_array)
        c("PROGram:LIST", self._program_list)
        c("PROGram:LIMit?", lambda p: self._no_params(p) or f"{SET_MAX_MV},{RESET_MAX_MV},{WIDTH_MAX_NS}")
        c("ROUTe:PROBe", self._route_probe)
        c("ROUTe:PROBe?", self._probe_query)
        c("SIM:CLOCk:ADVance", self._advance_clock)
        c("SIM:SEED?", lambda p: self._no_params(p) or str(chip.seed))
        c("SIM:FAULt", self._fault)
        c("MVM?", self._mvm)
        c("MVM:GAIN", self._set_mvm_gain)
        c("MVM:GAIN?", lambda p: self._no_params(p) or str(self.mvm_gain))
        c("SOLVe?", self._solve)
        c("SOLVe:IMAX?", lambda p: self._no_params(p) or f"{self._loop().imax_ua:g}")
        c("SOLVe:VMAX?", lambda p: self._no_params(p) or f"{self._loop().vmax_v:g}")

    @property
    def capabilities(self) -> tuple[str, ...]:
        return CAPABILITIES + ((LOOP_CAPABILITY,) if self.chip.loop is not None else ())

    def _loop(self):
        if self.chip.loop is None:
            raise ScpiError(-113, "Undefined header; this board has no closed loop (CHIP:CAP? does not list IMVM)")
        return self.chip.loop

    def wire_time(self, n_bytes: int) -> None:
        """Bytes take time on the wire: the clock advances by their transfer time."""
        self.chip.advance(n_bytes / WIRE_BYTES_PER_S)

    def _reset_settings(self) -> None:
        self.read_volt: float = DEFAULTS["read_volt"]
        self.averages: int = DEFAULTS["averages"]
        self.width_ns: int = DEFAULTS["width_ns"]
        self.probe: tuple[int, int] | None = DEFAULTS["probe"]
        self.array: int = DEFAULTS["array"]
        self.mvm_gain: int = DEFAULTS["mvm_gain"]

    # ---- identity and settings -----------------------------------------------------

    def _idn(self, params: list[Param]) -> str:
        self._no_params(params)
        return f"LABCTL,ACB-TWIN,{self.serial},{FIRMWARE_VERSION}"

    def _select_array(self, params: list[Param]) -> None:
        expect_count(params, 1)
        index = as_int(params[0], "array")
        in_range(index, 0, self.chip.arrays - 1, "array")
        self.array = index

    def _set_read_volt(self, params: list[Param]) -> None:
        expect_count(params, 1)
        volts = as_float(params[0], "read voltage")
        if not 0 < volts <= READ_VOLT_MAX:
            raise ScpiError(-222, f"Data out of range; read voltage {volts:g} not in (0, {READ_VOLT_MAX:g}]")
        self.read_volt = volts

    def _set_averages(self, params: list[Param]) -> None:
        expect_count(params, 1)
        n = as_int(params[0], "averages")
        in_range(n, 1, AVG_MAX, "averages")
        self.averages = n

    def _set_width(self, params: list[Param]) -> None:
        expect_count(params, 1)
        width = as_int(params[0], "width")
        in_range(width, WIDTH_MIN_NS, WIDTH_MAX_NS, "width")
        self.width_ns = width

    # ---- addressing ----------------------------------------------------------------

    def _row(self, param: Param) -> int:
        row = as_int(param, "row")
        in_range(row, 0, self.chip.rows - 1, "row")
        return row

    def _col(self, param: Param) -> int:
        col = as_int(param, "col")
        in_range(col, 0, self.chip.cols - 1, "col")
        return col

    # ---- reading -------------------------------------------------------------------

    def _read(self, rows: slice) -> np.ndarray:
        return self.chip.read_codes(self.array, rows, self.read_volt, self.averages)

    def _read_cell(self, params: list[Param]) -> str:
        expect_count(params, 2)
        row, col = self._row(params[0]), self._col(params[1])
        return str(int(self._read(slice(row, row + 1))[0, col]))

    def _read_row(self, params: list[Param]) -> bytes:
        expect_count(params, 1)
        row = self._row(params[0])
        return self._read(slice(row, row + 1)).astype("<i2").tobytes()

    def _read_array(self, params: list[Param]) -> bytes:
        self._no_params(params)
        return self._read(slice(None)).astype("<i2").tobytes()

    def _read_rows(self, params: list[Param]) -> bytes:
        """The listed rows, in the order listed: verification reads only rows with unfinished cells."""
        expect_count(params, 1)
        payload = as_block(params[0], "rows")
        if not payload or len(payload) % 2:
            raise ScpiError(-224, f"Illegal parameter value; a row list of {len(payload)} bytes is not int16 rows")
        rows = np.frombuffer(payload, dtype="<i2").astype(np.intp)
        if rows.size > self.chip.rows or rows.min() < 0 or rows.max() >= self.chip.rows:
            raise ScpiError(-222, f"Data out of range; rows must be 0..{self.chip.rows - 1}")
        if np.unique(rows).size != rows.size:
            raise ScpiError(-224, "Illegal parameter value; a row is listed twice")
        return self.chip.read_codes(self.array, rows, self.read_volt, self.averages).astype("<i2").tobytes()

    # ---- programming ---------------------------------------------------------------

    def _amplitudes(self, payload: bytes, count: int) -> np.ndarray:
        if len(payload) != 2 * count:
            raise ScpiError(-224, f"Illegal parameter value; block holds {len(payload)} bytes, expected {2 * count}")
        amplitudes = np.frombuffer(payload, dtype="<i2").astype(np.int32)
        self._check_amplitudes(amplitudes)
        return amplitudes

    @staticmethod
    def _check_amplitudes(amplitudes: np.ndarray) -> None:
        high, low = int(amplitudes.max(initial=0)), int(amplitudes.min(initial=0))
        if high > SET_MAX_MV or -low > RESET_MAX_MV:
            raise ScpiError(
                -222,
                f"Data out of range; amplitude {high if high > SET_MAX_MV else low} mV beyond "
                f"limits +{SET_MAX_MV}/-{RESET_MAX_MV} mV",
            )

    def _pulse(self, rows: slice, amplitudes: np.ndarray) -> None:
        self.chip.program(self.array, rows, amplitudes, self.width_ns)

    def _program_cell(self, params: list[Param]) -> None:
        expect_count(params, 3)
        row, col = self._row(params[0]), self._col(params[1])
        amplitude = as_int(params[2], "amplitude")
        self._check_amplitudes(np.array([amplitude]))
        amplitudes = np.zeros((1, self.chip.cols), dtype=np.int32)
        amplitudes[0, col] = amplitude
        self._pulse(slice(row, row + 1), amplitudes)

    def _program_row(self, params: list[Param]) -> None:
        expect_count(params, 2)
        row = self._row(params[0])
        amplitudes = self._amplitudes(as_block(params[1], "amplitudes"), self.chip.cols)
        self._pulse(slice(row, row + 1), amplitudes.reshape(1, -1))

    def _program_array(self, params: list[Param]) -> None:
        expect_count(params, 1)
        count = self.chip.rows * self.chip.cols
        amplitudes = self._amplitudes(as_block(params[0], "amplitudes"), count)
        self._pulse(slice(None), amplitudes.reshape(self.chip.rows, self.chip.cols))

    def _program_list(self, params: list[Param]) -> None:
        """Sparse pulses, ``row,col,mV`` triples: only the listed cells get a pulse, and the
        board time is that of the rows they fall in (a row's cells are pulsed together)."""
        expect_count(params, 1)
        payload = as_block(params[0], "pulses")
        if not payload or len(payload) % 6:
            raise ScpiError(-224, f"Illegal parameter value; a pulse list of {len(payload)} bytes is not "
                                  "int16 row,col,mV triples")
        triples = np.frombuffer(payload, dtype="<i2").astype(np.int32).reshape(-1, 3)
        rows, cols, amplitudes = triples.T
        if rows.min() < 0 or rows.max() >= self.chip.rows or cols.min() < 0 or cols.max() >= self.chip.cols:
            raise ScpiError(-222, f"Data out of range; cells must be within {self.chip.rows}x{self.chip.cols}")
        if np.unique(rows * self.chip.cols + cols).size != len(triples):
            raise ScpiError(-224, "Illegal parameter value; a cell is listed twice")
        self._check_amplitudes(amplitudes)
        pulsed = np.unique(rows)
        grid = np.zeros((pulsed.size, self.chip.cols), dtype=np.int32)
        grid[np.searchsorted(pulsed, rows), cols] = amplitudes
        self.chip.program_rows(self.array, pulsed, grid, self.width_ns)

    # ---- compute -------------------------------------------------------------------

    def _set_mvm_gain(self, params: list[Param]) -> None:
        expect_count(params, 1)
        gain = as_int(params[0], "MVM gain")
        if gain < 1 or gain > self.chip.rows or gain & (gain - 1):
            raise ScpiError(-222, f"Data out of range; MVM gain {gain} is not a power of two in 1..{self.chip.rows}")
        self.mvm_gain = gain

    def _row_codes(self, params: list[Param], what: str) -> np.ndarray:
        """One block of ``rows`` int16 codes within ±127: the inputs of MVM? and SOLV?."""
        expect_count(params, 1)
        payload = as_block(params[0], "inputs")
        if len(payload) != 2 * self.chip.rows:
            raise ScpiError(-224, f"Illegal parameter value; block holds {len(payload)} bytes, expected {2 * self.chip.rows}")
        inputs = np.frombuffer(payload, dtype="<i2")
        if np.abs(inputs.astype(np.int32)).max(initial=0) > 127:
            raise ScpiError(-222, f"Data out of range; {what} must be within -127..127")
        return inputs

    def _mvm(self, params: list[Param]) -> bytes:
        inputs = self._row_codes(params, "DAC codes")
        codes = self.chip.mvm_codes(self.array, inputs, self.read_volt, self.averages, self.mvm_gain)
        return codes.astype("<i2").tobytes()

    def _solve(self, params: list[Param]) -> bytes:
        self._loop()
        codes, _ = self.chip.solve_codes(self._row_codes(params, "input codes"), self.averages)
        return codes.astype("<i2").tobytes()

    # ---- probe routing and twin-only commands --------------------------------------

    def _route_probe(self, params: list[Param]) -> None:
        if len(params) == 1 and as_text(params[0]).upper() == "OFF":
            self.probe = None
            return
        expect_count(params, 2)
        self.probe = (self._row(params[0]), self._col(params[1]))

    def _probe_query(self, params: list[Param]) -> str:
        self._no_params(params)
        return "OFF" if self.probe is None else f"{self.probe[0]},{self.probe[1]}"

    def _fault(self, params: list[Param]) -> None:
        expect_count(params, 2)
        kind = as_text(params[0]).lower()
        rate = as_float(params[1], "rate")
        if self.faults is None:
            raise ScpiError(-221, "Settings conflict; wire faults need a served twin (labctl sim serve)")
        try:
            self.faults.set(kind, rate)
        except ValueError as err:
            raise ScpiError(-224, f"Illegal parameter value; {err}") from None

    def _advance_clock(self, params: list[Param]) -> None:
        expect_count(params, 1)
        seconds = as_float(params[0], "seconds")
        in_range(seconds, 0.0, 10 * 365 * 86400.0, "seconds")
        self.chip.advance(seconds)
