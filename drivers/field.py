"""Instruments driven through the field's own drivers: a PyMeasure or QCoDeS instrument class,
behind labctl's safe operating area.

A lab whose SMU is not a Keithley 2450 (a Keysight B2900, a Keithley 2600), or whose
temperature controller is one QCoDeS or PyMeasure already drives, names the class in
lab.toml (``smu = { driver = "pymeasure:Keithley2450", resource = "..." }``); calibration then
talks to it through the same few operations as to labctl's own drivers. Every voltage,
current and temperature is checked against the chip's limits here, before the framework
sends it.

This module holds what every such instrument shares (finding the class, opening it, one
line for any failure) and the SMU; ``field_temperature`` holds the temperature controller.
The framework is imported only when such an instrument is opened.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from labctl_drivers.errors import DriverError
from labctl_drivers.instrument import LinkStats
from labctl_drivers.safety import SafeOperatingArea, check_range

FRAMEWORKS = {"pymeasure": ("PyMeasure", "pymeasure.instruments"),
              "qcodes": ("QCoDeS", "qcodes.instrument_drivers")}


def resolve_class(driver: str) -> type:
    """``pymeasure:Keithley2450`` / ``qcodes:Keithley2450`` (searched among the framework's
    makers) or ``pymeasure:keithley.Keithley2450`` / ``qcodes:Keithley.Keithley2450``: the
    instrument class; DriverError naming what is missing."""
    framework, _, name = driver.partition(":")
    if framework not in FRAMEWORKS or not name:
        raise DriverError(f"driver {driver!r}: expected 'pymeasure:<Class>' or 'qcodes:<Class>' "
                          "(or '<framework>:<maker>.<Class>')")
    title, package = FRAMEWORKS[framework]
    try:
        instruments = importlib.import_module(package)
    except ImportError:
        raise DriverError(f"driver {driver!r} needs {title}: pip install {framework}") from None
    module_path, _, class_name = name.rpartition(".")
    makers = [module_path] if module_path else [m.name for m in pkgutil.iter_modules(instruments.__path__)]
    for maker in makers:
        try:
            module = importlib.import_module(f"{package}.{maker}")
        except Exception:  # noqa: BLE001 - a maker's package that fails to import is not the one asked for
            continue
        found = getattr(module, class_name, None)
        if isinstance(found, type):
            return found
    raise DriverError(f"driver {driver!r}: {title} has no instrument class {class_name!r}"
                      + (f" in {package}.{module_path}" if module_path else ""))


class FieldInstrument:
    """What every instrument behind a field driver shares: the chip's limits, a link record
    (the framework's adapter retries on its own, so labctl counts nothing there), and one
    line naming the instrument and the operation for any exception the framework raises."""

    retries = 0  # the framework's adapter does its own

    def __init__(self, instrument: Any, resource: str, name: str, soa: SafeOperatingArea | None = None) -> None:
        self.instrument, self.resource, self.name = instrument, resource, name
        self.soa = soa or SafeOperatingArea()
        self.link = LinkStats()

    @classmethod
    def open(cls, driver: str, resource: str, options: dict[str, Any] | None = None, name: str = "instrument",
             soa: SafeOperatingArea | None = None) -> FieldInstrument:
        klass = resolve_class(driver)
        try:
            instrument = cls._construct(klass, resource, name, options or {})
        except Exception as err:  # noqa: BLE001 - the frameworks and pyvisa raise many kinds; one line says which
            raise DriverError(f"{name}: {driver} at {resource}: {type(err).__name__}: {err}") from None
        return cls(instrument, resource, name, soa)

    @staticmethod
    def _construct(klass: type, resource: str, name: str, options: dict[str, Any]) -> Any:
        return klass(resource, **options)  # PyMeasure's convention

    def _call(self, what: str, action):
        try:
            return action()
        except DriverError:
            raise
        except Exception as err:  # noqa: BLE001
            raise DriverError(f"{self.name}: {what}: {type(err).__name__}: {err}") from None

    def identify(self) -> str:
        return str(self._call("identify", self._identify))

    def snapshot(self) -> dict[str, Any]:
        return {"resource": self.resource, "idn": self.identify(), "driver": type(self.instrument).__module__
                + "." + type(self.instrument).__name__}

    def close(self) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 - closing must not hide why a run ended
            pass

    def _identify(self) -> str:
        return self.instrument.id

    def _close(self) -> None:
        self.instrument.adapter.close()


class QcodesLink:
    """How a QCoDeS instrument is opened, identified and closed (mixed in before the operations)."""

    instrument: Any

    @staticmethod
    def _construct(klass: type, resource: str, name: str, options: dict[str, Any]) -> Any:
        return klass(f"labctl_{name}_{id(resource):x}", resource, **options)  # QCoDeS names every instrument

    def _identify(self) -> str:
        idn = self.instrument.IDN()
        return ",".join(str(idn.get(key) or "") for key in ("vendor", "model", "serial", "firmware"))

    def _close(self) -> None:
        self.instrument.close()


class FieldSmu(FieldInstrument):
    """The operations read-out calibration needs, on a PyMeasure SMU that sources voltage and
    measures current (``apply_voltage``, ``measure_current``, ``source_voltage``,
    ``compliance_current``, ``enable_source``/``disable_source``, ``current``: the
    interface PyMeasure's Keithley SMUs share)."""

    def __init__(self, instrument: Any, resource: str, name: str = "smu", soa: SafeOperatingArea | None = None
                 ) -> None:
        super().__init__(instrument, resource, name, soa)
        self._nplc = 1.0
        self._output = False

    @property
    def source_voltage(self) -> float:
        return float(self._call("source voltage", self._get_voltage))

    @source_voltage.setter
    def source_voltage(self, volts: float) -> None:
        check_range(self.name, "source voltage", volts, -self.soa.smu_voltage_max_v, self.soa.smu_voltage_max_v, " V")
        self._call("source voltage", lambda: self._set_voltage(volts))

    @property
    def current_limit(self) -> float:
        return float(self._call("current limit", self._get_limit))

    @current_limit.setter
    def current_limit(self, amps: float) -> None:
        check_range(self.name, "current limit", amps, 1e-9, self.soa.smu_current_limit_max_a, " A")
        self._call("current limit", lambda: self._set_limit(amps))

    @property
    def output_enabled(self) -> bool:
        return self._output

    @output_enabled.setter
    def output_enabled(self, on: bool) -> None:
        self._call("output", lambda: self._set_output(bool(on)))
        self._output = bool(on)

    def configure_voltage_source(self, current_limit_a: float, nplc: float = 1.0) -> None:
        """Source voltage at 0 V, measure current, autorange; output stays off until asked."""
        check_range(self.name, "current limit", current_limit_a, 1e-9, self.soa.smu_current_limit_max_a, " A")
        check_range(self.name, "NPLC", nplc, 0.01, 10.0)
        self._call("configure", lambda: self._configure(current_limit_a, nplc))
        self._nplc = nplc

    def measure_current(self) -> float:
        return float(self._call("measure current", self._measure))

    def shutdown(self) -> None:
        """The safe state: 0 V, output off."""
        self.source_voltage = 0.0
        self.output_enabled = False

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "nplc": self._nplc}

    # ---- PyMeasure's SMU interface (QcodesSmu overrides these) ---------------------

    def _get_voltage(self) -> float:
        return self.instrument.source_voltage

    def _set_voltage(self, volts: float) -> None:
        self.instrument.source_voltage = volts

    def _get_limit(self) -> float:
        return self.instrument.compliance_current

    def _set_limit(self, amps: float) -> None:
        self.instrument.compliance_current = amps

    def _set_output(self, on: bool) -> None:
        (self.instrument.enable_source if on else self.instrument.disable_source)()

    def _configure(self, current_limit_a: float, nplc: float) -> None:
        self.instrument.apply_voltage(compliance_current=current_limit_a)
        self.instrument.measure_current(nplc=nplc, auto_range=True)

    def _measure(self) -> float:
        return self.instrument.current


class QcodesSmu(QcodesLink, FieldSmu):
    """The same operations on a QCoDeS SMU with the ``source``/``sense`` submodules and
    ``output_enabled`` parameter its Keithley 2450 driver has (``smu = { driver =
    "qcodes:Keithley2450", resource = "...", options = { visalib = "@py" } }``)."""

    def _get_voltage(self) -> float:
        return self.instrument.source.voltage()

    def _set_voltage(self, volts: float) -> None:
        self.instrument.source.voltage(volts)

    def _get_limit(self) -> float:
        return self.instrument.source.limit()

    def _set_limit(self, amps: float) -> None:
        self.instrument.source.limit(amps)

    def _set_output(self, on: bool) -> None:
        self.instrument.output_enabled(on)

    def _configure(self, current_limit_a: float, nplc: float) -> None:
        self.instrument.source.function("voltage")
        self.instrument.sense.function("current")
        self.instrument.source.voltage(0.0)
        self.instrument.source.limit(current_limit_a)
        self.instrument.sense.nplc(nplc)
        self.instrument.sense.auto_range(True)

    def _measure(self) -> float:
        return self.instrument.sense.current()


def open_field_instrument(kind: str, driver: str, resource: str, options: dict[str, Any] | None = None,
                          name: str | None = None, soa: SafeOperatingArea | None = None, timeout_s: float = 2.0
                          ) -> Any:
    """The ``kind`` of instrument (``smu`` or ``temperature``) behind ``driver``: ``pymeasure:...``
    or ``qcodes:...``, wrapped in the chip's limits; else a name registered in the
    ``labctl.instruments`` entry point group, whose factory keeps them itself."""
    name = name or kind
    if ":" not in driver:
        from labctl_drivers.plugins import open_instrument

        return open_instrument(driver, resource=resource, options=options or {}, soa=soa or SafeOperatingArea(),
                               timeout_s=timeout_s, name=name, kind=kind)
    if kind == "temperature":
        from labctl_drivers.field_temperature import FieldTemperature, QcodesTemperature

        klass: type[FieldInstrument] = QcodesTemperature if driver.startswith("qcodes:") else FieldTemperature
    else:
        klass = QcodesSmu if driver.startswith("qcodes:") else FieldSmu
    return klass.open(driver, resource, options, name, soa)

