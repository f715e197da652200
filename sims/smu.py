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
USER_DELAYS = 5  # a 2450's user delays per function
BUFFER_POINTS = 100_000  # defbuffer1's capacity after *RST
DEFAULTS: dict[str, float | bool | str] = {  # a 2450's settings after *RST, where the twin only stores them
    "source_volt_range": 0.2, "source_curr_range": 1e-8, "source_curr_level_a": 0.0, "source_curr_vlimit_v": 2.1,
    "current_range_a": 1e-4, "auto_range": True, "count": 1, "terminals": "FRON", "output_off_mode": "NORM",
    "sense_volt_range": 0.02, "sense_res_range": 2e5, **{f"sense_{f}_nplc": 1.0 for f in ("volt", "res")},
    **{f"source_{f}_{k}": v for f in ("volt", "curr") for k, v in (("auto_range", True), ("delay_s", 0.0),
                                                                     ("auto_delay", True), ("readback", True))},
    **{f"sense_{f}_{k}": v for f in ("curr", "volt", "res") for k, v in (
        ("auto_range", True), ("four_wire", False), ("auto_zero", True), ("averaging", False),
        ("average_count", 10), ("average_filter", "REP"))},
    **{f"{side}_{f}_user_delay_{n}_s": 0.0 for side, functions in (("source", ("volt", "curr")),
                                                                   ("sense", ("curr", "volt", "res")))
       for f in functions for n in range(1, USER_DELAYS + 1)},
}


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
        c("*LANG?", lambda p: self._no_params(p) or "SCPI")  # the 2450's command set (not TSP or 2400)
        c("*TRG", lambda p: self._no_params(p))
        c("*WAI", lambda p: self._no_params(p))
        c("ABORt", lambda p: self._no_params(p))
        c("STATus:PRESet", lambda p: self._no_params(p))
        c("SYSTem:BEEPer[:IMMediate]", lambda p: None)
        c("SOURce:FUNCtion[:MODE]", self._source_function)
        c("SOURce:FUNCtion[:MODE]?", lambda p: self._no_params(p) or "VOLT")
        c("SOURce:VOLTage[:LEVel][:IMMediate][:AMPLitude]", self._source_voltage)
        c("SOURce:VOLTage[:LEVel][:IMMediate][:AMPLitude]?", lambda p: self._no_params(p) or f"{self.voltage:g}")
        c("SOURce:VOLTage:ILIMit[:LEVel]", self._current_limit)
        c("SOURce:VOLTage:ILIMit[:LEVel]?", lambda p: self._no_params(p) or f"{self.current_limit:g}")
        c("SOURce:VOLTage:ILIMit[:LEVel]:TRIPped?", lambda p: self._no_params(p) or str(int(self._tripped)))
        # settings with no physics behind them on the twin are stored and read back, range-checked as a 2450 does
        for function, short, limit in (("VOLTage", "volt", VOLTAGE_RANGE), ("CURRent", "curr", 1.05)):
            head = f"SOURce:{function}"
            self._setting(f"{head}:RANGe", f"source_{short}_range", 0.0, limit)
            self._switch_setting(f"{head}:RANGe:AUTO", f"source_{short}_auto_range")
            self._setting(f"{head}:DELay", f"source_{short}_delay_s", 0.0, 4000.0)
            self._switch_setting(f"{head}:DELay:AUTO", f"source_{short}_auto_delay")
            self._switch_setting(f"{head}:READ:BACK", f"source_{short}_readback")
            for n in range(1, USER_DELAYS + 1):
                self._setting(f"{head}:DELay:USER{n}", f"source_{short}_user_delay_{n}_s", 0.0, 10_000.0)
        # a current source level and its voltage limit are kept, but the twin sources voltage only
        self._setting("SOURce:CURRent[:LEVel][:IMMediate][:AMPLitude]", "source_curr_level_a", -1.05, 1.05)
        self._setting("SOURce:CURRent:VLIMit[:LEVel]", "source_curr_vlimit_v", 0.02, VOLTAGE_RANGE)
        c("SOURce:CURRent:VLIMit[:LEVel]:TRIPped?", lambda p: self._no_params(p) or "0")
        c("SENSe:FUNCtion[:ON]", self._sense_function)
        c("SENSe:FUNCtion[:ON]?", lambda p: self._no_params(p) or '"CURR:DC"')
        for function, short, limit in (("CURRent[:DC]", "curr", 1.05), ("VOLTage[:DC]", "volt", VOLTAGE_RANGE),
                                       ("RESistance", "res", 2e8)):
            head = f"SENSe:{function}"
            if short != "curr":  # the current's range and integration are the measurement's own, below
                self._setting(f"{head}:RANGe[:UPPer]", f"sense_{short}_range", 0.0, limit)
                self._switch_setting(f"{head}:RANGe:AUTO", f"sense_{short}_auto_range")
                self._setting(f"{head}:NPLCycles", f"sense_{short}_nplc", 0.01, 10.0)
            self._switch_setting(f"{head}:RSENse", f"sense_{short}_four_wire")
            self._switch_setting(f"{head}:AZERo[:STATe]", f"sense_{short}_auto_zero")
            self._switch_setting(f"{head}:AVERage[:STATe]", f"sense_{short}_averaging")
            self._setting(f"{head}:AVERage:COUNt", f"sense_{short}_average_count", 1, 100, integer=True)
            self._choice_setting(f"{head}:AVERage:TCONtrol", f"sense_{short}_average_filter", ("REP", "MOV"))
            for n in range(1, USER_DELAYS + 1):
                self._setting(f"{head}:DELay:USER{n}", f"sense_{short}_user_delay_{n}_s", 0.0, 10_000.0)
        self._setting("SENSe:CURRent[:DC]:RANGe[:UPPer]", "current_range_a", 1e-8, 1.05)
        self._switch_setting("SENSe:CURRent[:DC]:RANGe:AUTO", "auto_range")
        c("SENSe:CURRent[:DC]:NPLCycles", self._nplc)
        c("SENSe:CURRent[:DC]:NPLCycles?", lambda p: self._no_params(p) or f"{self.nplc:g}")
        self._setting("SENSe:COUNt", "count", 1, 300_000, integer=True)
        self._choice_setting("ROUTe:TERMinals", "terminals", ("FRON", "REAR"))
        self._choice_setting("OUTPut[:STATe]:SMODe", "output_off_mode", ("NORM", "HIMP", "ZERO", "GUAR"))
        self._choice_setting("OUTPut:VOLTage:SMODe", "output_off_mode", ("NORM", "HIMP", "ZERO", "GUAR"))
        self._choice_setting("OUTPut:CURRent:SMODe", "output_off_mode", ("NORM", "HIMP", "ZERO", "GUAR"))
        c("SYSTem:LFRequency?", lambda p: self._no_params(p) or f"{LINE_FREQUENCY_HZ:g}")
        c("TRACe:POINts?", lambda p: self._buffer_name(p) or str(BUFFER_POINTS))
        c("TRACe:ACTual?", lambda p: self._buffer_name(p) or str(min(self._readings, BUFFER_POINTS)))
        c("TRACe:CLEar", lambda p: self._buffer_name(p) or setattr(self, "_readings", 0))
        c("OUTPut[:STATe]", self._output)
        c("OUTPut[:STATe]?", lambda p: self._no_params(p) or str(int(self.output)))
        c("READ?", self._measure)
        c("MEASure[:CURRent][:DC]?", self._measure)
        c("FETCh?", lambda p: self._buffer_name(p) or f"{self._last:.9e}")

    def _setting(self, header: str, name: str, low: float, high: float, integer: bool = False) -> None:
        """A numeric setting stored as sent (``MIN``/``MAX``/``DEF`` as a 2450 takes them)."""
        def write(params: list[Param]) -> None:
            expect_count(params, 1)
            word = as_text(params[0]).upper()
            value = {"MIN": low, "MINIMUM": low, "MAX": high, "MAXIMUM": high}.get(word)
            if value is None:
                value = DEFAULTS[name] if word in ("DEF", "DEFAULT") else as_float(params[0], name.replace("_", " "))
            in_range(value, low, high, name.replace("_", " "))
            self.settings[name] = int(value) if integer else value
        self.command(header, write)
        self.command(header + "?", lambda p: self._no_params(p) or f"{self.settings[name]:g}")

    def _switch_setting(self, header: str, name: str) -> None:
        self.command(header, lambda p: self.settings.__setitem__(name, _switch(p)))
        self.command(header + "?", lambda p: self._no_params(p) or str(int(self.settings[name])))

    def _choice_setting(self, header: str, name: str, choices: tuple[str, ...]) -> None:
        """One of a few words, matched by its short form (``FRONt``, ``REAR``)."""
        def write(params: list[Param]) -> None:
            expect_count(params, 1)
            word = as_text(params[0]).upper()
            match = next((c for c in choices if word.startswith(c)), None)
            if match is None:
                raise ScpiError(-224, f"Illegal parameter value; {word!r} is not one of {', '.join(choices)}")
            self.settings[name] = match
        self.command(header, write)
        self.command(header + "?", lambda p: self._no_params(p) or self.settings[name])

    @staticmethod
    def _buffer_name(params: list[Param]) -> None:
        """The 2450 reads into a named reading buffer; the twin has the two default ones."""
        if len(params) > 1:
            raise ScpiError(-100, "Command error; expected at most a buffer name")
        if params and as_text(params[0]).strip("'\"").lower() not in ("defbuffer1", "defbuffer2"):
            raise ScpiError(-224, f"Illegal parameter value; no reading buffer {as_text(params[0])}")

    def _reset(self) -> None:
        self.voltage = 0.0
        self.current_limit = 1.05e-4
        self.nplc = 1.0
        self.output = False
        self.settings: dict[str, float | bool | str] = dict(DEFAULTS)
        self._tripped = False
        self._last = 0.0
        self._readings = 0  # in defbuffer1

    @property
    def auto_range(self) -> bool:
        return bool(self.settings["auto_range"])

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

    def _nplc(self, params: list[Param]) -> None:
        expect_count(params, 1)
        nplc = as_float(params[0], "NPLC")
        in_range(nplc, 0.01, 10.0, "NPLC")
        self.nplc = nplc

    def _output(self, params: list[Param]) -> None:
        self.output = _switch(params)

    def _measure(self, params: list[Param]) -> str:
        self._buffer_name(params)
        if not self.output:
            raise ScpiError(-221, "Settings conflict; output is off")
        integration = self.nplc / LINE_FREQUENCY_HZ
        if self.board.probe is None:
            self.chip.advance(integration)
            current = OPEN_CIRCUIT_NOISE_A * float(self.chip._rng.standard_normal())
        else:
            row, col = self.board.probe
            current = self.chip.probe_current_ua(self.board.array, row, col, self.voltage, integration) * 1e-6
        self._tripped = abs(current) >= self.current_limit
        current = max(-self.current_limit, min(self.current_limit, current))
        self._last = current
        self._readings += 1
        return f"{current:.9e}"
