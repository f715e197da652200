"""Instrument drivers and the transports they speak through."""

from labctl_drivers.board import AdcInfo, Board, Geometry, Identity, PulseLimits
from labctl_drivers.errors import DriverError, InstrumentError, InstrumentTimeout, LimitError, LinkError, ReplyError
from labctl_drivers.safety import SafeOperatingArea
from labctl_drivers.smu import Keithley2450
from labctl_drivers.temperature import LakeShore335
from labctl_drivers.transport import (
    InProcessTransport,
    SerialTransport,
    TracedTransport,
    Transport,
    VisaTransport,
    open_transport,
)

__all__ = [
    "AdcInfo",
    "Board",
    "DriverError",
    "Geometry",
    "Identity",
    "InProcessTransport",
    "InstrumentError",
    "InstrumentTimeout",
    "Keithley2450",
    "LakeShore335",
    "LimitError",
    "LinkError",
    "PulseLimits",
    "ReplyError",
    "SafeOperatingArea",
    "SerialTransport",
    "TracedTransport",
    "Transport",
    "VisaTransport",
    "open_transport",
]
