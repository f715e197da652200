"""Driver of a Keithley 2450 source-measure unit (the subset labctl uses), real or twin.

It sources a voltage on the board's probe port and measures the current: the slow,
accurate reference for read-out calibration. Voltage and current limit are bounded
by the chip's safe operating area before they reach the wire.
"""

from __future__ import annotations

from labctl_drivers.instrument import ScpiInstrument, control
from labctl_drivers.safety import SafeOperatingArea
from labctl_drivers.transport import Transport


def _on_off(value: bool) -> str:
    return "ON" if value else "OFF"


def _is_on(reply: str) -> bool:
    return reply.strip().upper() in ("1", "ON")


class Keithley2450(ScpiInstrument):
    source_voltage = control(
        ":SOUR:VOLT?", ":SOUR:VOLT %s", "Source voltage, V.",
        values=lambda smu: (-smu.soa.smu_voltage_max_v, smu.soa.smu_voltage_max_v), unit=" V",
    )
    current_limit = control(
        ":SOUR:VOLT:ILIM?", ":SOUR:VOLT:ILIM %s", "Current limit while sourcing voltage, A.",
        values=lambda smu: (1e-9, smu.soa.smu_current_limit_max_a), unit=" A",
    )
    nplc = control(":SENS:CURR:NPLC?", ":SENS:CURR:NPLC %s", "Integration time, power-line cycles.",
                   values=(0.01, 10.0))
    output_enabled = control(":OUTP?", ":OUTP %s", "Output relay state.", cast=_is_on, format=_on_off)

    def __init__(self, transport: Transport, name: str = "smu", soa: SafeOperatingArea | None = None) -> None:
        super().__init__(transport, name)
        self.soa = soa or SafeOperatingArea()

    def configure_voltage_source(self, current_limit_a: float, nplc: float = 1.0) -> None:
        """Source voltage, measure current, autorange; output stays off until asked."""
        for command in (":SOUR:FUNC VOLT", ':SENS:FUNC "CURR"', ":SENS:CURR:RANG:AUTO ON"):
            self.write_checked(command)
        self.current_limit = current_limit_a
        self.nplc = nplc

    def measure_current(self) -> float:
        """One integrated current measurement, A (output must be on)."""
        return self.query_values(":MEAS:CURR?", 1, float)[0]

    def shutdown(self) -> None:
        """The safe state: 0 V, output off."""
        self.source_voltage = 0.0
        self.output_enabled = False


def open_keithley2450(*, resource: str, options: dict, soa: SafeOperatingArea, timeout_s: float,
                      name: str = "smu") -> Keithley2450:
    """The ``keithley2450`` entry of ``labctl.instruments``: labctl's own 2450 driver, opened the
    way a third-party SMU driver is (``smu = { driver = "keithley2450", resource = "..." }``)."""
    from labctl_drivers.errors import DriverError
    from labctl_drivers.transport import open_transport

    if options:
        raise DriverError(f"the keithley2450 driver takes no options; got {', '.join(sorted(options))}")
    return Keithley2450(open_transport(resource, timeout_s, None, None, name), name=name, soa=soa)
