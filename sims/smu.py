"""The twin's source-measure unit: a Keithley 2450 subset over the shared chip.

It sources a voltage on the probe port and measures the current of whichever cell
the board has routed there (open circuit when nothing is routed), integrating for
NPLC power-line cycles and clamping at its current limit as a real SMU does.
"""

from __future__ import annotations

from labctl_sims.board import BoardTwin
from labctl_sims.scpi import Param, ScpiDevice, ScpiError, as_float, as_text, expect_count, in_range

LINE_FREQUENCY_HZ = 50.0
OPEN_CIRCUIT_NOISE_A = 1e-12
VOLTAGE_RANGE = 210.0
ON_WORDS = {"ON": True, "1": True, "OFF": False, "0": False}


def _switch(params: list[Param]) -> bool:
    """SCPI booleans: ON, OFF, 1 or 0."""
    expect_count(params, 1)
    word = as_text(params[0]).upper()
    if word not in ON_WORDS:
        raise ScpiError(-224, f"Illegal parameter value; {word!r} is not ON or OFF")
    return ON_WORDS[word]


class SmuTwin(ScpiDevice):
    def __init__(self, board: BoardTwin, serial: str = "TWIN0001") -> None:
        super().__init__()
        self.board = board
        self.chip = board.chip
        self.serial = serial
        self._reset()
        c = self.command
        c("*IDN?", lambda p: self._no_params(p) or f"KEITHLEY INSTRUMENTS,MODEL 2450,{self.serial},LABCTL-TWIN")
        c("*RST", lambda p: self._no_params(p) or self._reset())
        c("SOURce:FUNCtion", self._source_function)
        c("SOURce:FUNCtion?", lambda p: self._no_params(p) or "VOLT")
        c("SOURce:VOLTage", self._source_voltage)
        c("SOURce:VOLTage?", lambda p: self._no_params(p) or f"{self.voltage:g}")
        c("SOURce:VOLTage:ILIMit", self._current_limit)
        c("SOURce:VOLTage:ILIMit?", lambda p: self._no_params(p) or f"{self.current_limit:g}")
        c("SENSe:FUNCtion", self._sense_function)
        c("SENSe:FUNCtion?", lambda p: self._no_params(p) or '"CURR:DC"')
        c("SENSe:CURRent:RANGe:AUTO", self._auto_range)
        c("SENSe:CURRent:RANGe:AUTO?", lambda p: self._no_params(p) or str(int(self.auto_range)))
        c("SENSe:CURRent:NPLCycles", self._nplc)
        c("SENSe:CURRent:NPLCycles?", lambda p: self._no_params(p) or f"{self.nplc:g}")
        c("OUTPut[:STATe]", self._output)
        c("OUTPut[:STATe]?", lambda p: self._no_params(p) or str(int(self.output)))
        c("READ?", self._measure)
        c("MEASure:CURRent[:DC]?", self._measure)

    def _reset(self) -> None:
        self.voltage = 0.0
        self.current_limit = 1.05e-4
        self.nplc = 1.0
        self.auto_range = True
        self.output = False

    def _source_function(self, params: list[Param]) -> None:
        expect_count(params, 1)
        if as_text(params[0]).upper() not in ("VOLT", "VOLTAGE"):
            raise ScpiError(-224, "Illegal parameter value; this SMU sources voltage only")

    def _source_voltage(self, params: list[Param]) -> None:
        expect_count(params, 1)
        volts = as_float(params[0], "voltage")
        in_range(volts, -VOLTAGE_RANGE, VOLTAGE_RANGE, "voltage")
        self.voltage = volts

    def _current_limit(self, params: list[Param]) -> None:
        expect_count(params, 1)
        amps = as_float(params[0], "current limit")
        in_range(amps, 1e-9, 1.05, "current limit")
        self.current_limit = amps

    def _sense_function(self, params: list[Param]) -> None:
        expect_count(params, 1)
        if as_text(params[0]).upper() not in ("CURR", "CURR:DC", "CURRENT"):
            raise ScpiError(-224, "Illegal parameter value; this SMU measures current only")

    def _auto_range(self, params: list[Param]) -> None:
        self.auto_range = _switch(params)

    def _nplc(self, params: list[Param]) -> None:
        expect_count(params, 1)
        nplc = as_float(params[0], "NPLC")
        in_range(nplc, 0.01, 10.0, "NPLC")
        self.nplc = nplc

    def _output(self, params: list[Param]) -> None:
        self.output = _switch(params)

    def _measure(self, params: list[Param]) -> str:
        self._no_params(params)
        if not self.output:
            raise ScpiError(-221, "Settings conflict; output is off")
        integration = self.nplc / LINE_FREQUENCY_HZ
        if self.board.probe is None:
            self.chip.advance(integration)
            current = OPEN_CIRCUIT_NOISE_A * float(self.chip._rng.standard_normal())
        else:
            row, col = self.board.probe
            current = self.chip.probe_current_ua(self.board.array, row, col, self.voltage, integration) * 1e-6
        current = max(-self.current_limit, min(self.current_limit, current))
        return f"{current:.9e}"
