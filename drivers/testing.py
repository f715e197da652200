"""Protocol-level driver tests: a transport that plays a scripted conversation.

``expected_protocol(Board, [(b"READ:VOLT?", b"0.2"), ...])`` yields a driver whose
every write must match the next scripted command byte for byte, and whose reads
return the scripted replies. Any unexpected byte, or a command left unsent, fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from labctl_drivers.transport import InProcessTransport, ReplyBuffer

Exchange = tuple[bytes, bytes | None]  # (command without "\n", reply without "\n" or None)


class ScriptedTransport(ReplyBuffer):
    resource = "scripted://"

    def __init__(self, conversation: Sequence[Exchange]) -> None:
        super().__init__()
        self._script = list(conversation)
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)
        if not self._script:
            raise AssertionError(f"unexpected command {data!r}: the script is finished")
        expected, reply = self._script.pop(0)
        expected += b"\n"
        if data != expected:
            raise AssertionError(f"sent {data!r}, script expected {expected!r}")
        if reply is not None:
            self._buffer.extend(reply + b"\n")

    def close(self) -> None:
        pass

    def assert_done(self) -> None:
        if self._script:
            raise AssertionError(f"commands never sent: {[c for c, _ in self._script]!r}")


@contextmanager
def expected_protocol(driver_class: type, conversation: Sequence[Exchange], **kwargs: Any) -> Iterator[Any]:
    transport = ScriptedTransport(conversation)
    yield driver_class(transport, **kwargs)
    transport.assert_done()


class CountingTransport:
    """Wraps a transport and counts the messages sent: the round trips a batching costs.

    Given a callable instead of a transport, it wraps an in-process transport to it.
    """

    def __init__(self, inner) -> None:
        self._inner = inner if hasattr(inner, "read_line") else InProcessTransport(inner, "inproc://counting")
        self.resource = self._inner.resource
        self.round_trips = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.sent: list[bytes] = []  # the headers of what was sent (up to the first space), in order

    def write(self, data: bytes) -> None:
        self.round_trips += 1
        self.bytes_sent += len(data)
        self.sent.append(data.split(b" ", 1)[0].strip())
        self._inner.write(data)

    def read_line(self) -> bytes:
        line = self._inner.read_line()
        self.bytes_received += len(line)
        return line

    def read_exact(self, count: int) -> bytes:
        data = self._inner.read_exact(count)
        self.bytes_received += len(data)
        return data

    def recover(self) -> None:
        self._inner.recover()

    def close(self) -> None:
        self._inner.close()
