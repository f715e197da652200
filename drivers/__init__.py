"""Instrument drivers and the transports they speak through."""

from drivers.board import AdcInfo, Board, Geometry, Identity, PulseLimits
from drivers.errors import DriverError, InstrumentError, InstrumentTimeout, LimitError, ReplyError
from drivers.transport import InProcessTransport, Transport

__all__ = [
    "AdcInfo",
    "Board",
    "DriverError",
    "Geometry",
    "Identity",
    "InProcessTransport",
    "InstrumentError",
    "InstrumentTimeout",
    "LimitError",
    "PulseLimits",
    "ReplyError",
    "Transport",
]
