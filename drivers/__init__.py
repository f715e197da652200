"""Instrument drivers and the transports they speak through."""

from drivers.board import AdcInfo, Board, Geometry, Identity, PulseLimits
from drivers.errors import DriverError, InstrumentError, InstrumentTimeout, LimitError, LinkError, ReplyError
from drivers.safety import SafeOperatingArea
from drivers.smu import Keithley2450
from drivers.temperature import LakeShore335
from drivers.transport import InProcessTransport, SerialTransport, TracedTransport, Transport, VisaTransport, open_transport

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
