"""The twin's temperature controller: a Lake Shore 335 driving the chip's thermal model.

Loop 1 heats the chip; input A is the chip's sensor, a platinum RTD (its raw reading is
the IEC 60751 resistance of a Pt100). Loop 2 and input B answer but heat nothing (B reads
the ambient). The heater range bounds how hot it can get, and output 1 heats only in
closed-loop mode on input A. Settings with no physics behind them (PID terms, heater
setup, input names and types, temperature limits) are stored and read back. As on a
335, replies end in CR LF and there is no SCPI error queue: a refused command sets a bit
of the standard event status register (``*ESR?``) and changes nothing.
"""

from __future__ import annotations

from labctl_sims.chip import ChipModel
from labctl_sims.scpi import Param, ScpiDevice, ScpiError, as_float, as_int, as_text, expect_count, in_range
from labctl_sims.thermal import HEATER_HEADROOM_K

LOOPS = (1, 2)
INPUTS = ("A", "B")
MAX_SET_POINT_K = 500.0
CLOSED_LOOP, INPUT_A = 1, 1  # OUTMODE's codes
PT100_R0_OHM, PT100_A, PT100_B, PT100_C = 100.0, 3.9083e-3, -5.775e-7, -4.183e-12  # IEC 60751


def pt100_ohm(kelvin: float) -> float:
    """The resistance of an IEC 60751 Pt100 at this temperature (Callendar-Van Dusen)."""
    t = kelvin - 273.15
    c = PT100_C * (t - 100.0) * t**3 if t < 0 else 0.0
    return PT100_R0_OHM * (1.0 + PT100_A * t + PT100_B * t * t + c)


class TemperatureTwin(ScpiDevice):
    reply_terminator = b"\r\n"
    has_error_queue = False

    def __init__(self, chip: ChipModel, serial: str = "TWIN001") -> None:
        super().__init__()
        self.chip = chip
        self.serial = serial
        self._set_points = {1: chip.thermal.final_set_point_k, 2: chip.thermal.ambient_k}
        self._ranges = {1: chip.thermal.heater_range, 2: 0}
        self._ramps = {1: (0, 0.0), 2: (0, 0.0)}
        self._outmode = {1: [CLOSED_LOOP, INPUT_A, 0], 2: [0, 2, 0]}  # mode, input (A=1, B=2), power-up enable
        self._pid = {1: [50.0, 20.0, 0.0], 2: [50.0, 20.0, 0.0]}
        self._htrset = {1: [0, 1, 2, 0.0, 1], 2: [0, 1, 2, 0.0, 1]}  # type, resistance, max, user max, display
        self._intype = {name: [2, 1, 0, 0, 1] for name in INPUTS}  # platinum RTD, autorange, range 0, -, kelvin
        self._inname = {"A": "Chip", "B": "Ambient"}
        self._tlimit = {name: 0.0 for name in INPUTS}
        self._manual = {1: 0.0, 2: 0.0}  # MOUT: the output in open-loop mode, %, stored
        c = self.command
        c("*IDN?", lambda p: self._no_params(p) or f"LSCI,MODEL335,{self.serial},LABCTL-TWIN")
        c("*RST", lambda p: self._no_params(p))
        c("KRDG?", self._reading)
        c("CRDG?", lambda p: f"{float(self._reading(p)) - 273.15:+.3f}")
        c("SRDG?", lambda p: f"{pt100_ohm(float(self._reading(p))):+.3f}")
        c("RDGST?", lambda p: self._input(p) and "000")  # no reading fault
        c("HTR?", self._heater_output)
        c("RAMPST?", self._ramp_status)
        c("OUTMODE", self._set_outmode)
        c("OUTMODE?", lambda p: ",".join(str(v) for v in self._outmode[self._only_loop(p)]))
        c("PID", self._set_pid)
        c("PID?", lambda p: ",".join(f"{v:+.1f}" for v in self._pid[self._only_loop(p)]))
        c("HTRSET", self._set_htrset)
        c("HTRSET?", lambda p: "{},{},{},{:+.3f},{}".format(*self._htrset[self._only_loop(p)]))
        c("INTYPE", self._set_intype)
        c("INTYPE?", lambda p: ",".join(str(v) for v in self._intype[self._input(p)]))
        c("INNAME", self._set_inname)
        c("INNAME?", lambda p: self._inname[self._input(p)])
        c("MOUT", self._set_manual)
        c("MOUT?", lambda p: f"{self._manual[self._only_loop(p)]:+.3f}")
        c("TLIMIT", self._set_tlimit)
        c("TLIMIT?", lambda p: f"{self._tlimit[self._input(p)]:+.3f}")
        c("SETP", self._set_point)
        c("SETP?", self._set_point_query)
        c("RANGE", self._range)
        c("RANGE?", self._range_query)
        c("RAMP", self._ramp)
        c("RAMP?", self._ramp_query)

    def _only_loop(self, params: list[Param]) -> int:
        expect_count(params, 1)
        return self._loop(params[0])

    def _input(self, params: list[Param], count: int = 1) -> str:
        expect_count(params, count)
        name = as_text(params[0]).upper()
        if name not in INPUTS:
            raise ScpiError(-224, f"Illegal parameter value; input {name!r} is not A or B")
        return name

    def _apply_heater(self) -> None:
        """Output 1 heats the chip in closed loop on input A, at its range; otherwise not at all."""
        mode, source, _ = self._outmode[1]
        self.chip.thermal.heater_range = self._ranges[1] if (mode, source) == (CLOSED_LOOP, INPUT_A) else 0

    def _heater_output(self, params: list[Param]) -> str:
        """Heater output, % of the range's power: what holding the lagged target above ambient takes."""
        loop = self._only_loop(params)
        thermal = self.chip.thermal
        if loop != 1 or thermal.heater_range == 0:
            return "+0.0"
        headroom = HEATER_HEADROOM_K[thermal.heater_range]
        lift = min(thermal.set_point_k, thermal.ambient_k + headroom) - thermal.ambient_k
        return f"{100.0 * min(max(lift / headroom, 0.0), 1.0):+.1f}"

    def _ramp_status(self, params: list[Param]) -> str:
        thermal = self.chip.thermal
        ramping = (self._only_loop(params) == 1 and thermal.ramp_k_per_s is not None
                   and thermal.set_point_k != thermal.final_set_point_k)
        return str(int(ramping))

    def _set_outmode(self, params: list[Param]) -> None:
        expect_count(params, 4)
        loop = self._loop(params[0])
        mode, source, power_up = (as_int(x, name) for x, name in zip(params[1:], ("mode", "input", "power-up")))
        in_range(mode, 0, 5, "mode")
        in_range(source, 0, 2, "input")
        in_range(power_up, 0, 1, "power-up enable")
        self._outmode[loop] = [mode, source, power_up]
        self._apply_heater()

    def _set_pid(self, params: list[Param]) -> None:
        expect_count(params, 4)
        loop = self._loop(params[0])
        terms = [as_float(x, name) for x, name in zip(params[1:], ("P", "I", "D"))]
        for value, (name, low, high) in zip(terms, (("P", 0.1, 1000.0), ("I", 0.1, 1000.0), ("D", 0.0, 200.0))):
            in_range(value, low, high, name)
        self._pid[loop] = terms

    def _set_htrset(self, params: list[Param]) -> None:
        expect_count(params, 6)
        loop = self._loop(params[0])
        kind, resistance, maximum = (as_int(x, n) for x, n in zip(params[1:4], ("type", "resistance", "max current")))
        user_max, display = as_float(params[4], "max user current"), as_int(params[5], "display")
        in_range(kind, 0, 1, "output type")
        in_range(resistance, 1, 2, "heater resistance")
        in_range(maximum, 0, 4, "max current")
        in_range(user_max, 0.0, 2.0, "max user current")
        in_range(display, 1, 2, "display")
        self._htrset[loop] = [kind, resistance, maximum, user_max, display]

    def _set_intype(self, params: list[Param]) -> None:
        name = self._input(params[:1])
        expect_count(params, 6)
        fields = [as_int(x, "input type field") for x in params[1:]]
        for value, (label, high) in zip(fields, (("sensor type", 4), ("autorange", 1), ("range", 8),
                                                 ("compensation", 1), ("units", 3))):
            in_range(value, 0, high, label)
        if fields[0] != 2:
            raise ScpiError(-221, "Settings conflict; the chip's sensor is a platinum RTD (type 2)")
        self._intype[name] = fields

    def _set_inname(self, params: list[Param]) -> None:
        name = self._input(params[:1])
        expect_count(params, 2)
        text = as_text(params[1]).strip('"')
        if len(text) > 15:
            raise ScpiError(-224, "Illegal parameter value; an input name is at most 15 characters")
        self._inname[name] = text

    def _set_manual(self, params: list[Param]) -> None:
        expect_count(params, 2)
        loop = self._loop(params[0])
        percent = as_float(params[1], "manual output")
        in_range(percent, 0.0, 100.0, "manual output")
        self._manual[loop] = percent

    def _set_tlimit(self, params: list[Param]) -> None:
        name = self._input(params[:1])
        expect_count(params, 2)
        limit = as_float(params[1], "temperature limit")
        in_range(limit, 0.0, MAX_SET_POINT_K, "temperature limit")
        self._tlimit[name] = limit

    def _loop(self, param: Param) -> int:
        loop = as_int(param, "loop")
        if loop not in LOOPS:
            raise ScpiError(-222, f"Data out of range; loop {loop} is not 1 or 2")
        return loop

    def _reading(self, params: list[Param]) -> str:
        kelvin = self.chip.sensor_temperature() if self._input(params) == "A" else self.chip.thermal.ambient_k
        return f"{kelvin:+.3f}"

    def _set_point(self, params: list[Param]) -> None:
        expect_count(params, 2)
        loop = self._loop(params[0])
        kelvin = as_float(params[1], "set point")
        in_range(kelvin, 0.0, MAX_SET_POINT_K, "set point")
        self._set_points[loop] = kelvin
        if loop == 1:
            self.chip.set_temperature(kelvin)

    def _set_point_query(self, params: list[Param]) -> str:
        expect_count(params, 1)
        return f"{self._set_points[self._loop(params[0])]:+.3f}"

    def _range(self, params: list[Param]) -> None:
        expect_count(params, 2)
        loop = self._loop(params[0])
        heater = as_int(params[1], "range")
        in_range(heater, 0, 3, "range")
        self._ranges[loop] = heater
        self._apply_heater()

    def _range_query(self, params: list[Param]) -> str:
        expect_count(params, 1)
        return str(self._ranges[self._loop(params[0])])

    def _ramp(self, params: list[Param]) -> None:
        expect_count(params, 3)
        loop = self._loop(params[0])
        enabled = as_int(params[1], "ramp state")
        in_range(enabled, 0, 1, "ramp state")
        rate = as_float(params[2], "ramp rate")
        in_range(rate, 0.1 if enabled else 0.0, 100.0, "ramp rate")
        self._ramps[loop] = (enabled, rate)
        if loop == 1:
            thermal = self.chip.thermal
            thermal.ramp_k_per_s = rate / 60.0 if enabled else None
            if not enabled:
                thermal.set_point_k = thermal.final_set_point_k

    def _ramp_query(self, params: list[Param]) -> str:
        expect_count(params, 1)
        enabled, rate = self._ramps[self._loop(params[0])]
        return f"{enabled},{rate:g}"
