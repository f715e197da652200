"""Typed failures of the driver layer, so callers can tell a refusal from a fault."""

from __future__ import annotations


class DriverError(Exception):
    """Base of every error raised by ``drivers``."""


class InstrumentError(DriverError):
    """The instrument reported an error on its queue (SCPI code and its own message)."""

    def __init__(self, instrument: str, code: int, message: str, command: str = "") -> None:
        self.instrument = instrument
        self.code = code
        self.message = message
        self.command = command
        after = f" after {command!r}" if command else ""
        super().__init__(f"{instrument}: error {code}, {message!r}{after}")


class InstrumentTimeout(DriverError):
    """No (complete) reply arrived in time."""


class LinkError(DriverError):
    """The link itself failed (port gone, connection closed) and could not be restored."""


class ReplyError(DriverError):
    """A reply arrived but does not parse as the protocol says it must."""


class LimitError(DriverError, ValueError):
    """A setting was refused before it reached the wire."""
