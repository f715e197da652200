"""The twin's temperature controller: a Lake Shore 335 subset driving the chip's thermal model.

Loop 1 heats the chip; input A is the chip's sensor. Loop 2 and input B answer but
heat nothing (B reads the ambient). The heater range bounds how hot it can get.
"""

from __future__ import annotations

from labctl_sims.chip import ChipModel
from labctl_sims.scpi import Param, ScpiDevice, ScpiError, as_float, as_int, as_text, expect_count, in_range

LOOPS = (1, 2)
MAX_SET_POINT_K = 500.0


class TemperatureTwin(ScpiDevice):
    def __init__(self, chip: ChipModel, serial: str = "TWIN001") -> None:
        super().__init__()
        self.chip = chip
        self.serial = serial
        self._set_points = {1: chip.thermal.final_set_point_k, 2: chip.thermal.ambient_k}
        self._ranges = {1: chip.thermal.heater_range, 2: 0}
        self._ramps = {1: (0, 0.0), 2: (0, 0.0)}
        c = self.command
        c("*IDN?", lambda p: self._no_params(p) or f"LSCI,MODEL335,{self.serial},LABCTL-TWIN")
        c("*RST", lambda p: self._no_params(p))
        c("KRDG?", self._reading)
        c("SETP", self._set_point)
        c("SETP?", self._set_point_query)
        c("RANGE", self._range)
        c("RANGE?", self._range_query)
        c("RAMP", self._ramp)
        c("RAMP?", self._ramp_query)

    def _loop(self, param: Param) -> int:
        loop = as_int(param, "loop")
        if loop not in LOOPS:
            raise ScpiError(-222, f"Data out of range; loop {loop} is not 1 or 2")
        return loop

    def _reading(self, params: list[Param]) -> str:
        expect_count(params, 1)
        channel = as_text(params[0]).upper()
        if channel == "A":
            return f"{self.chip.sensor_temperature():+.3f}"
        if channel == "B":
            return f"{self.chip.thermal.ambient_k:+.3f}"
        raise ScpiError(-224, f"Illegal parameter value; input {channel!r} is not A or B")

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
        if loop == 1:
            self.chip.thermal.heater_range = heater

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
