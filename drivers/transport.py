"""Byte transports. Instruments speak through these and never touch a port directly.

Every transport offers the same four calls (write bytes, read a line, read exactly n
bytes, close), which is all that SCPI with binary blocks needs; so block framing
lives once in the driver and works unchanged over serial, VISA and in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from drivers.errors import InstrumentTimeout


class Transport(Protocol):
    resource: str

    def write(self, data: bytes) -> None: ...

    def read_line(self) -> bytes: ...

    def read_exact(self, count: int) -> bytes: ...

    def close(self) -> None: ...


class InProcessTransport:
    """Hands bytes to a handler in this process (the twin's ``feed``) and buffers its replies.

    The handler is called with exactly the bytes a serial port would carry. A read
    that finds nothing buffered times out at once: nothing else can ever arrive.
    """

    def __init__(self, handler: Callable[[bytes], bytes], resource: str = "inproc://") -> None:
        self._handler = handler
        self.resource = resource
        self._buffer = bytearray()
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed:
            raise InstrumentTimeout(f"{self.resource}: transport is closed")
        self._buffer.extend(self._handler(data))

    def read_line(self) -> bytes:
        end = self._buffer.find(b"\n")
        if end < 0:
            raise InstrumentTimeout(f"{self.resource}: no reply")
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return line

    def read_exact(self, count: int) -> bytes:
        if len(self._buffer) < count:
            raise InstrumentTimeout(f"{self.resource}: reply shorter than {count} bytes")
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def close(self) -> None:
        self._closed = True
