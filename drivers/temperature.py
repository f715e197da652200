"""Driver of a Lake Shore 335 temperature controller (the subset labctl uses), real or twin.

Loop 1 heats the chip, input A reads it. The Lake Shore has no SCPI error queue, so
every setting is range-checked here, against the chip's safe temperature range.
"""

from __future__ import annotations

from labctl_drivers.instrument import ScpiInstrument, control, measurement
from labctl_drivers.safety import SafeOperatingArea, check_range
from labctl_drivers.transport import Transport

SERIAL_SETTINGS = {"baudrate": 57600, "bytesize": 7, "parity": "O", "stopbits": 1}


class LakeShore335(ScpiInstrument):
    has_error_queue = False

    temperature_k = measurement("KRDG? A", "Chip temperature (input A), K.")
    set_point_k = control(
        "SETP? 1", "SETP 1,%s", "Loop 1 set point, K.",
        values=lambda tc: (tc.soa.temperature_min_k, tc.soa.temperature_max_k), unit=" K",
    )
    heater_range = control("RANGE? 1", "RANGE 1,%s", "Loop 1 heater range: 0 off, 1 low, 2 medium, 3 high.",
                           cast=int, values=(0, 3))

    def __init__(self, transport: Transport, name: str = "temperature", soa: SafeOperatingArea | None = None) -> None:
        super().__init__(transport, name)
        self.soa = soa or SafeOperatingArea()

    def check_errors(self, after: str = "") -> None:
        """No error queue: ``*OPC?`` at least confirms the commands were taken before going on."""
        self.query("*OPC?")

    def write_checked(self, command: str) -> None:
        """The command and ``*OPC?`` in one message (settings are idempotent, so a retry is safe)."""
        self.query(f"{command};*OPC?")

    def ramp(self, rate_k_per_min: float | None) -> None:
        """Ramp the set point at this rate (None: jump)."""
        if rate_k_per_min is None:
            command = "RAMP 1,0,0"
        else:
            check_range(self.name, "ramp rate", rate_k_per_min, 0.1, 100.0, " K/min")
            command = f"RAMP 1,1,{rate_k_per_min:g}"
        self.write_checked(command)

    def heater_off(self) -> None:
        self.heater_range = 0


def open_lakeshore335(*, resource: str, options: dict, soa: SafeOperatingArea, timeout_s: float,
                      name: str = "temperature") -> LakeShore335:
    """The ``lakeshore335`` entry of ``labctl.instruments``: labctl's own 335 driver, opened the
    way a third-party controller's is (``temperature = { driver = "lakeshore335", resource = "..." }``;
    a serial port gets the 335's 57600 7O1)."""
    from labctl_drivers.errors import DriverError
    from labctl_drivers.transport import open_transport

    if options:
        raise DriverError(f"the lakeshore335 driver takes no options; got {', '.join(sorted(options))}")
    return LakeShore335(open_transport(resource, timeout_s, SERIAL_SETTINGS, None, name), name=name, soa=soa)
