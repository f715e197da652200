"""Byte transports. Instruments speak through these and never touch a port directly.

Every transport offers the same calls (write bytes, read a line, read exactly n
bytes, recover, close), which is all that SCPI with binary blocks needs; so block
framing and retries live once in the instrument layer and work unchanged over
serial (pyserial), VISA (pyvisa with the pyvisa-py backend) and in-process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from labctl_drivers.errors import InstrumentTimeout, LinkError, ReplyError

DEFAULT_TIMEOUT_S = 2.0
DRAIN_WINDOW_S = 0.3  # how long a late reply may still trickle in before a retry
MAX_REPLY_LINE = 1 << 16  # a text reply is a few dozen bytes; an instrument streaming more is broken or hostile
READ_CHUNK = 4096
RECONNECT_WINDOW_S = 15.0  # how long a dropped link may stay away (a cable re-seated, a USB adapter re-enumerated)


def reconnect(open_link: Callable[[], None], window_s: float = RECONNECT_WINDOW_S) -> None:
    """Open a link again, retrying with backoff while it stays away, up to ``window_s``."""
    deadline = time.monotonic() + window_s
    pause = 0.1
    while True:
        try:
            open_link()
            return
        except LinkError:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 1.0)


class PendingBytes:
    """Bytes received and not yet consumed, from which lines and exact counts are cut.

    A link delivers whatever has arrived, not one reply at a time; reading it in chunks
    (instead of a byte per system call) keeps a long binary block fast, and the overall
    deadline keeps an instrument that trickles bytes from holding a read forever.
    """

    def __init__(self, resource: str, timeout_s: float) -> None:
        self.resource = resource
        self.timeout_s = timeout_s
        self._data = bytearray()

    def clear(self) -> None:
        self._data.clear()

    def read(self, count: int | None, receive: Callable[[float], bytes | None]) -> bytes:
        """A line (``count`` None: up to a newline, at most ``MAX_REPLY_LINE`` bytes) or
        exactly ``count`` bytes within ``timeout_s``. ``receive(remaining_s)`` waits at most
        that long and returns what arrived (None or empty: nothing yet)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            taken = self._take(count)
            if taken is not None:
                return taken
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._late(count)
            chunk = receive(remaining)
            if chunk:
                self._data += chunk

    def _take(self, count: int | None) -> bytes | None:
        if count is not None:
            if len(self._data) < count:
                return None
            data = bytes(self._data[:count])
            del self._data[:count]
            return data
        end = self._data.find(b"\n", 0, MAX_REPLY_LINE)
        if end >= 0:
            line = bytes(self._data[: end + 1])
            del self._data[: end + 1]
            return line
        if len(self._data) >= MAX_REPLY_LINE:
            self._data.clear()
            raise too_long(self.resource)
        return None

    def _late(self, count: int | None) -> InstrumentTimeout:
        return late(self.resource, self.timeout_s, count, self._data)


def late(resource: str, timeout_s: float, count: int | None, got: bytes | bytearray) -> InstrumentTimeout:
    what = "no complete reply" if count is None else f"reply cut short: {len(got)} of {count} bytes"
    shown = f" (got {bytes(got[:40])!r})" if got and count is None else ""
    return InstrumentTimeout(f"{resource}: {what} within {timeout_s:g} s{shown}")


def too_long(resource: str) -> ReplyError:
    return ReplyError(f"{resource}: reply longer than {MAX_REPLY_LINE} bytes without a newline")


class Transport(Protocol):
    resource: str

    def write(self, data: bytes) -> None: ...

    def read_line(self) -> bytes: ...

    def read_exact(self, count: int) -> bytes: ...

    def recover(self) -> None:
        """Discard stale input (a late or partial reply) and reconnect if the link dropped."""

    def close(self) -> None: ...


class ReplyBuffer:
    """Replies produced in this process, read back as from a wire; nothing more can arrive.

    A read that finds no complete reply times out at once.
    """

    resource = "buffer://"

    def __init__(self) -> None:
        self._buffer = bytearray()

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

    def recover(self) -> None:
        self._buffer.clear()


class InProcessTransport(ReplyBuffer):
    """Hands bytes to a handler in this process (the twin's ``feed``) and buffers its replies.

    The handler is called with exactly the bytes a serial port would carry.
    """

    def __init__(self, handler: Callable[[bytes], bytes], resource: str = "inproc://") -> None:
        super().__init__()
        self._handler = handler
        self.resource = resource
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed:
            raise LinkError(f"{self.resource}: transport is closed")
        self._buffer.extend(self._handler(data))

    def close(self) -> None:
        self._closed = True


class SerialTransport:
    """A serial port through pyserial: a device path or any pyserial URL."""

    def __init__(self, port: str, baudrate: int = 921600, bytesize: int = 8, parity: str = "N",
                 stopbits: float = 1, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.resource = port
        self._settings = {"baudrate": baudrate, "bytesize": bytesize, "parity": parity, "stopbits": stopbits}
        self.timeout_s = timeout_s
        self._port: Any = None
        self._broken = False  # the port failed (unplugged): recover reopens it
        self._pending = PendingBytes(port, timeout_s)
        self._open()

    def _open(self) -> None:
        import serial

        settings = self._settings
        if os.path.realpath(self.resource).startswith("/dev/pts/"):
            # a pseudo-terminal carries bytes, not line settings; Linux refuses some
            # (7 data bits with parity after an earlier session), so it gets the defaults
            settings = {"baudrate": self._settings["baudrate"]}
        try:
            self._port = serial.serial_for_url(
                self.resource, timeout=self.timeout_s, write_timeout=self.timeout_s, **settings
            )
        except (serial.SerialException, ValueError, OSError) as err:
            raise LinkError(f"{self.resource}: cannot open serial port: {err}") from None
        except Exception as err:  # termios.error is not an OSError
            raise LinkError(f"{self.resource}: cannot configure serial port: {err}") from None
        self._broken = False

    def write(self, data: bytes) -> None:
        import serial

        try:
            self._port.write(data)
        except _port_failures(serial) as err:
            self._broken = True
            raise LinkError(f"{self.resource}: write failed: {err}") from None

    def read_line(self) -> bytes:
        return self._read(None)

    def read_exact(self, count: int) -> bytes:
        return self._read(count)

    def _read(self, count: int | None) -> bytes:
        import serial

        try:
            return self._pending.read(count, self._receive)
        except _port_failures(serial) as err:
            self._broken = True
            raise LinkError(f"{self.resource}: read failed: {err}") from None

    def _receive(self, remaining_s: float) -> bytes | None:
        """What has arrived, waiting at most ``remaining_s`` for the first byte. pyserial's
        ``read_until`` takes one byte per system call (seconds for a 64 KB block on a busy
        host); this takes all that is waiting."""
        import select

        waiting = self._port.in_waiting
        if waiting:
            return self._port.read(waiting)
        fileno = getattr(self._port, "fileno", None)
        if fileno is None:  # a URL port without a descriptor: pyserial's own timeout bounds the wait
            return self._port.read(1)
        ready, _, _ = select.select([fileno()], [], [], remaining_s)
        return self._port.read(max(1, self._port.in_waiting)) if ready else None

    def recover(self) -> None:
        import serial

        time.sleep(DRAIN_WINDOW_S)
        self._pending.clear()
        if not self._broken:
            try:
                self._port.reset_input_buffer()
                return
            except _port_failures(serial):
                pass
        self.close()  # reopened only when it failed: reopening can reset boards that watch DTR
        reconnect(self._open)

    def close(self) -> None:
        import serial

        if self._port is not None:
            try:
                self._port.close()
            except _port_failures(serial):
                pass


def _port_failures(serial: Any) -> tuple[type[BaseException], ...]:
    """What a serial port raises when it fails or vanishes (termios.error is not an OSError)."""
    try:
        import termios
    except ImportError:  # Windows: no termios, pyserial raises SerialException there
        return (serial.SerialException, OSError)
    return (serial.SerialException, OSError, termios.error)


class VisaTransport:
    """Any VISA resource through pyvisa, by default with the pure-Python pyvisa-py backend."""

    def __init__(self, resource: str, timeout_s: float = DEFAULT_TIMEOUT_S, backend: str = "@py",
                 serial: dict[str, Any] | None = None) -> None:
        self.resource = resource
        self.timeout_s = timeout_s
        self._backend = backend
        self._serial = serial or {}
        self._session: Any = None
        self._pending = PendingBytes(resource, timeout_s)  # bytes received on a socket and not yet read
        self._open()

    def _open(self) -> None:
        import pyvisa

        try:
            manager = pyvisa.ResourceManager(self._backend)
            session = manager.open_resource(self.resource, open_timeout=int(self.timeout_s * 1000))
        except (pyvisa.errors.VisaIOError, ValueError, OSError) as err:
            raise LinkError(f"{self.resource}: cannot open VISA resource: {err}") from None
        session.timeout = int(self.timeout_s * 1000)
        session.read_termination = "\n"
        session.write_termination = ""
        if self._is_socket():
            # small commands must leave at once: Nagle plus a delayed ACK would hold a
            # command sent right after a reply-less one for ~40 ms
            _set_nodelay(session)
            if not _connected(session):  # pyvisa-py opens without waiting for the connection
                session.close()
                raise LinkError(f"{self.resource}: cannot connect (refused or unreachable)")
        if self.resource.upper().startswith("ASRL"):
            from pyvisa import constants

            session.baud_rate = self._serial.get("baudrate", 921600)
            session.data_bits = self._serial.get("bytesize", 8)
            session.parity = {"N": constants.Parity.none, "O": constants.Parity.odd, "E": constants.Parity.even}[
                self._serial.get("parity", "N")]
            session.stop_bits = constants.StopBits.one
        self._session = session

    def _call(self, action: Callable[[], Any], what: str) -> Any:
        import pyvisa

        try:
            return action()
        except pyvisa.errors.VisaIOError as err:
            if err.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise InstrumentTimeout(f"{self.resource}: no complete reply within {self.timeout_s:g} s") from None
            raise LinkError(f"{self.resource}: {what} failed: {err}") from None
        except (OSError, EOFError) as err:
            raise LinkError(f"{self.resource}: {what} failed: {err}") from None

    def _is_socket(self) -> bool:
        head = self.resource.upper()
        return head.startswith("TCPIP") and head.endswith("SOCKET")

    def write(self, data: bytes) -> None:
        self._call(lambda: self._session.write_raw(data), "write")

    def read_line(self) -> bytes:
        return self._read(None)

    def read_exact(self, count: int) -> bytes:
        return self._read(count)

    def _read(self, count: int | None) -> bytes:
        """A line (``count`` None: up to a newline, at most ``MAX_REPLY_LINE`` bytes) or
        exactly ``count`` bytes, within ``timeout_s`` overall. pyvisa-py's timeout is
        checked only while nothing arrives, so an instrument that trickles bytes would
        never time out: a socket is read here directly, anything else in chunks with the
        deadline checked between them."""
        deadline = time.monotonic() + self.timeout_s
        sock = _raw_socket(self._session) if self._is_socket() else None
        if sock is not None:
            return self._read_socket(sock, count)
        data = bytearray()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise late(self.resource, self.timeout_s, count, data)
                self._session.timeout = max(1, int(remaining * 1000))
                if count is None:
                    want = min(READ_CHUNK, MAX_REPLY_LINE + 1 - len(data))
                    data += self._call(lambda n=want: self._session.read_bytes(n, chunk_size=n, break_on_termchar=True),
                                      "read")
                    if data.endswith(b"\n"):
                        return bytes(data)
                    if len(data) > MAX_REPLY_LINE:
                        raise too_long(self.resource)
                else:
                    want = count - len(data)
                    data += self._call(lambda n=want: self._session.read_bytes(n, chunk_size=min(n, 1 << 20),
                                                                       break_on_termchar=False), "read")
                    if len(data) >= count:
                        return bytes(data)
        finally:
            try:
                self._session.timeout = int(self.timeout_s * 1000)
            except Exception:  # noqa: BLE001 - a session that failed mid-read is reopened by recover()
                pass

    def _read_socket(self, sock: Any, count: int | None) -> bytes:
        import select

        def receive(remaining_s: float) -> bytes | None:
            try:
                ready, _, _ = select.select([sock], [], [], remaining_s)
                chunk = sock.recv(1 << 20) if ready else None
            except OSError as err:
                raise LinkError(f"{self.resource}: read failed: {err}") from None
            if chunk == b"":
                raise LinkError(f"{self.resource}: read failed: the instrument closed the connection")
            return chunk

        return self._pending.read(count, receive)

    def recover(self) -> None:
        """Reopen the session: it discards whatever a late reply left, and restores a dropped link."""
        if not self._is_socket():  # a new socket connection starts clean; a serial line must drain
            time.sleep(DRAIN_WINDOW_S)
        self.close()
        self._pending.clear()
        reconnect(self._open)

    def close(self) -> None:
        if self._session is not None:
            try:
                self._session.close()
            except Exception:  # noqa: BLE001 - a session that is already gone is closed enough
                pass


def _raw_socket(session: Any) -> Any:
    """pyvisa-py keeps a socket session's socket as its interface; another backend: None."""
    try:
        sock = session.visalib.sessions[session.session].interface
    except Exception:  # noqa: BLE001 - another backend, or a closed session
        return None
    return sock if hasattr(sock, "recv") else None


def _connected(session: Any) -> bool:
    """Whether a VISA socket session's TCP connection is up (True when it cannot be told)."""
    sock = _raw_socket(session)
    if sock is None:  # another backend: assume so, the first exchange will tell
        return True
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def _set_nodelay(session: Any) -> None:
    """TCP_NODELAY on a VISA socket session, so small commands leave at once."""
    import socket

    sock = _raw_socket(session)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class CountedTransport:
    """Wraps a transport and counts the bytes each way, into ``stats`` (a ``LinkStats``):
    what a run's steps put on the wire, beside the board time they took."""

    def __init__(self, inner: Transport, stats: Any) -> None:
        self._inner = inner
        self._stats = stats
        self.resource = inner.resource

    def write(self, data: bytes) -> None:
        self._inner.write(data)
        self._stats.bytes_sent += len(data)

    def read_line(self) -> bytes:
        data = self._inner.read_line()
        self._stats.bytes_received += len(data)
        return data

    def read_exact(self, count: int) -> bytes:
        data = self._inner.read_exact(count)
        self._stats.bytes_received += len(data)
        return data

    def __getattr__(self, name: str) -> Any:  # recover, close, note, and a test transport's own attributes
        return getattr(self._inner, name)


class TracedTransport:
    """Wraps a transport and logs every exchange with a timestamp: the bench's flight recorder."""

    def __init__(self, inner: Transport, sink: TextIO, name: str = "") -> None:
        self._inner = inner
        self._sink = sink
        self.resource = inner.resource
        self._name = name or inner.resource

    def _log(self, arrow: str, data: bytes) -> None:
        shown = data if len(data) <= 80 or not data.startswith(b"#") else data[:12] + b"...(%d bytes)" % len(data)
        self._sink.write(f"{time.time():.6f} {self._name} {arrow} {shown!r}\n")
        self._sink.flush()

    def note(self, text: str) -> None:
        self._sink.write(f"{time.time():.6f} {self._name} ! {text}\n")
        self._sink.flush()

    def write(self, data: bytes) -> None:
        self._log(">", data)
        self._inner.write(data)

    def read_line(self) -> bytes:
        data = self._inner.read_line()
        self._log("<", data)
        return data

    def read_exact(self, count: int) -> bytes:
        data = self._inner.read_exact(count)
        self._log("<", data)
        return data

    def recover(self) -> None:
        self.note("recover: discard stale input, reconnect if needed")
        self._inner.recover()

    def close(self) -> None:
        self._inner.close()


def open_transport(resource: str, timeout_s: float = DEFAULT_TIMEOUT_S, serial: dict[str, Any] | None = None,
                   trace: TextIO | None = None, name: str = "") -> Transport:
    """VISA for VISA resource strings (TCPIP…, ASRL…, USB…, GPIB…), pyserial for paths and URLs."""
    head = resource.split("::", 1)[0].upper()
    if head.startswith(("TCPIP", "ASRL", "USB", "GPIB")):
        transport: Transport = VisaTransport(resource, timeout_s, serial=serial)
    else:
        transport = SerialTransport(resource, timeout_s=timeout_s, **(serial or {}))
    return TracedTransport(transport, trace, name) if trace is not None else transport
