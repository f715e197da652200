"""A temperature controller driven through the field's own driver (``temperature = { driver =
"qcodes:LakeshoreModel335", resource = "..." }``), behind the chip's safe temperature range.

labctl needs four things of a controller: the chip's temperature, a set point, a heater
range (0 off .. 3 high, a Lake Shore's steps) and the heater off. The set point is checked
against the chip's range here, before the framework sends it: a Lake Shore has no error
queue, so a set point it silently refused would show only as a run that never settles;
every setting is also read back, which confirms it was taken (and that the heater is off
when the bench is left safe).
"""

from __future__ import annotations

from typing import Any

from labctl_drivers.errors import DriverError
from labctl_drivers.field import FieldInstrument, QcodesLink
from labctl_drivers.safety import check_range

HEATER_RANGES = ("off", "low", "medium", "high")  # what both frameworks call a Lake Shore's ranges 0..3


class FieldTemperature(FieldInstrument):
    """The operations on PyMeasure's Lake Shore classes (``LakeShore3xx``, ``LakeShore331``):
    input A reads the chip, output (loop) 1 heats it."""

    @property
    def temperature_k(self) -> float:
        return float(self._call("temperature", self._read_kelvin))

    @property
    def set_point_k(self) -> float:
        return float(self._call("set point", self._get_set_point))

    @set_point_k.setter
    def set_point_k(self, kelvin: float) -> None:
        check_range(self.name, "set point", kelvin, self.soa.temperature_min_k, self.soa.temperature_max_k, " K")
        self._call("set point", lambda: self._set_set_point(float(kelvin)))
        kept = self.set_point_k  # no error queue: reading it back is how a refusal shows (and waits for the write)
        if abs(kept - kelvin) > 0.01:
            raise DriverError(f"{self.name}: set point {kelvin:g} K not taken (the controller holds {kept:g} K)")

    @property
    def heater_range(self) -> int:
        named = str(self._call("heater range", self._get_heater)).strip().lower()
        if named not in HEATER_RANGES:
            return int(self._call("heater range", lambda: int(float(named))))
        return HEATER_RANGES.index(named)

    @heater_range.setter
    def heater_range(self, step: int) -> None:
        check_range(self.name, "heater range", step, 0, len(HEATER_RANGES) - 1)
        self._call("heater range", lambda: self._set_heater(HEATER_RANGES[int(step)]))
        kept = self.heater_range  # read back, as for the set point: "heater off" must be confirmed, not hoped for
        if kept != int(step):
            raise DriverError(f"{self.name}: heater range {HEATER_RANGES[int(step)]} not taken (the controller "
                              f"holds {HEATER_RANGES[kept] if 0 <= kept < len(HEATER_RANGES) else kept})")

    def heater_off(self) -> None:
        self.heater_range = 0

    # ---- PyMeasure's Lake Shore interface (QcodesTemperature overrides these) ------

    def _read_kelvin(self) -> float:
        return self.instrument.input_A.kelvin

    def _get_set_point(self) -> float:
        return self.instrument.output_1.setpoint

    def _set_set_point(self, kelvin: float) -> None:
        self.instrument.output_1.setpoint = kelvin

    # PyMeasure's control is ``range`` (its LakeShore3xx docstring's ``heater_range`` is no
    # property: assigning it sets a Python attribute and sends nothing)
    def _get_heater(self) -> Any:
        return self.instrument.output_1.range

    def _set_heater(self, named: str) -> None:
        self.instrument.output_1.range = named


class QcodesTemperature(QcodesLink, FieldTemperature):
    """The same on QCoDeS's Lake Shore drivers (``LakeshoreModel335``, ``LakeshoreModel336``):
    channel ``A`` and the ``output_1`` loop's ``setpoint`` and ``output_range``."""

    def _read_kelvin(self) -> float:
        return self.instrument.A.temperature()

    def _get_set_point(self) -> float:
        return self.instrument.output_1.setpoint()

    def _set_set_point(self, kelvin: float) -> None:
        self.instrument.output_1.setpoint(kelvin)

    def _get_heater(self) -> Any:
        return self.instrument.output_1.output_range()

    def _set_heater(self, named: str) -> None:
        self.instrument.output_1.output_range(named)
