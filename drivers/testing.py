"""Protocol-level driver tests: a transport that plays a scripted conversation.

``expected_protocol(Board, [(b"READ:VOLT?", b"0.2"), ...])`` yields a driver whose
every write must match the next scripted command byte for byte, and whose reads
return the scripted replies. Any unexpected byte, or a command left unsent, fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from drivers.transport import InProcessTransport, ReplyBuffer

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


class CountingTransport(InProcessTransport):
    """An in-process transport that counts messages sent: the round trips a batching costs."""

    def __init__(self, handler, resource: str = "inproc://counting") -> None:
        super().__init__(handler, resource)
        self.round_trips = 0

    def write(self, data: bytes) -> None:
        self.round_trips += 1
        super().write(data)
