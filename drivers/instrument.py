"""SCPI instrument base: query/write with a lock, blocks, error queue, declarative settings.

Settings are declared PyMeasure-style with ``control``: the command, a doc, a unit and
the validated range sit on one line, and a setter that would leave the range raises
``LimitError`` before any byte reaches the wire.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from contextlib import contextmanager
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np

from labctl_drivers.errors import DriverError, InstrumentError, InstrumentTimeout, LinkError, ReplyError
from labctl_drivers.framing import INT16, decode_values, encode_block, read_block
from labctl_drivers.safety import check_range, refuse
from labctl_drivers.transport import CountedTransport, Transport

MAX_ERRORS_DRAINED = 40  # one more than the queue depth: always reaches "No error"
ERROR_QUERIES = {"SYST:ERR?", ":SYST:ERR?", "SYSTEM:ERROR?", "SYST:ERR:NEXT?"}
T = TypeVar("T")
log = logging.getLogger("labctl.drivers")

_RESOURCE_LOCKS: dict[str, threading.RLock] = {}
_REGISTRY_LOCK = threading.Lock()


def resource_lock(resource: str) -> threading.RLock:
    """One lock per physical resource (keyed by its resource string, not by driver object),
    so every driver and thread talking to an instrument takes turns, query and reply together."""
    with _REGISTRY_LOCK:
        return _RESOURCE_LOCKS.setdefault(resource, threading.RLock())


@dataclass
class LinkStats:
    """What a flaky link cost: a run's summary says so, instead of just being slow."""

    lost_replies: int = 0  # no reply (or no acknowledgement) within the timeout
    damaged_replies: int = 0  # a reply that did not parse
    link_drops: int = 0  # the connection or port failed and was opened again
    retries: int = 0  # queries sent again
    time_lost_s: float = 0.0  # from each failed attempt's start to the end of its recovery
    bytes_sent: int = 0  # on the wire, every message (CountedTransport)
    bytes_received: int = 0

    def note_failure(self, err: Exception, started: float) -> None:
        if isinstance(err, InstrumentTimeout):
            self.lost_replies += 1
        elif isinstance(err, LinkError):
            self.link_drops += 1
        else:
            self.damaged_replies += 1
        self.time_lost_s += time.monotonic() - started

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


Limits = tuple[float, float] | Callable[[Any], tuple[float, float]]


def _exact(value: Any) -> str:
    """The value as sent: floats in their shortest exact form, so the number on the wire
    is the number that was range-checked (``%g`` would round 301.015625 up to 301.016)."""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def _finite(value: Any) -> Any:
    """A reading of nan or inf is no reading (an instrument's overflow code is a finite number)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not finite")
    return value


class measurement:  # noqa: N801 - reads like PyMeasure's Instrument.measurement
    """A read-only instrument property."""

    def __init__(self, get_command: str, doc: str, *, cast: Callable[[str], Any] = float) -> None:
        self.get_command = get_command
        self.cast = cast
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instrument: ScpiInstrument | None, owner: type) -> Any:
        if instrument is None:
            return self
        reply = instrument.query(self.get_command)
        try:
            return _finite(self.cast(reply))
        except ValueError:
            raise ReplyError(instrument._context(f"{self.name} reply {reply!r} is not a finite "
                                                 f"{self.cast.__name__}")) from None


class control(measurement):  # noqa: N801
    """A settable instrument property whose range is checked before the wire.

    ``values`` is a fixed ``(low, high)`` or a function of the instrument, so a range
    can come from the chip's safe operating area. The command takes the value through
    ``%s``; ``format`` turns a value into that argument (exact decimal by default).
    """

    def __init__(
        self,
        get_command: str,
        set_command: str,
        doc: str,
        *,
        cast: Callable[[str], Any] = float,
        values: Limits | None = None,
        unit: str = "",
        format: Callable[[Any], Any] | None = None,  # noqa: A002
    ) -> None:
        super().__init__(get_command, doc, cast=cast)
        self.set_command = set_command
        self.values = values
        self.unit = unit
        self.format = format

    def __set__(self, instrument: ScpiInstrument, value: Any) -> None:
        if self.cast is int:
            if not isinstance(value, (int, np.integer)) and not (
                isinstance(value, (float, np.floating)) and float(value).is_integer()
            ):
                raise refuse(instrument.name, f"{self.name} {value!r} is not a whole number")
            value = int(value)
        if self.values is not None:
            low, high = self.values(instrument) if callable(self.values) else self.values
            check_range(instrument.name, self.name, value, low, high, self.unit)
        command = self.set_command % (self.format(value) if self.format else _exact(value))
        instrument.write_checked(command)


class ScpiInstrument:
    """One instrument on one transport; a query and its reply are never interleaved.

    A query whose reply is lost, late or damaged is sent again (``retries`` times)
    after the transport discards stale input and, if the link dropped, reconnects.
    Commands that change state are never sent twice: after a lost acknowledgement
    the error queue says whether they failed.
    """

    has_error_queue = True
    retries = 4  # a flaky USB link loses a reply now and then; five losses in a row is a dead link

    def __init__(self, transport: Transport, name: str) -> None:
        self.link = LinkStats()
        self.transport = CountedTransport(transport, self.link)
        self.name = name
        self._lock = resource_lock(transport.resource)
        self.last_command = ""
        self._interrupted = False  # an exchange was cut short: its reply may still be on the wire

    # ---- raw exchange --------------------------------------------------------------

    def write(self, command: str) -> None:
        self.write_raw(command.encode("ascii") + b"\n", command)

    def write_raw(self, message: bytes, command: str = "") -> None:
        with self._lock:
            self.last_command = command or message[:40].decode("ascii", "replace")
            try:
                self.transport.write(message)
            except DriverError as err:
                raise type(err)(self._context(err)) from None

    def query(self, command: str) -> str:
        def read() -> str:
            line = self.transport.read_line()
            try:
                return line.decode("ascii").strip()
            except UnicodeDecodeError:
                raise ReplyError(f"non-ASCII reply: {line[:60]!r}") from None

        return self._exchange(command, read)

    def query_values(
        self, command: str, count: int, cast: Callable[[str], Any] = float, separator: str = ","
    ) -> list[Any]:
        """A reply of exactly ``count`` values (``;`` separates the answers of joined queries)."""

        def read() -> list[Any]:
            line = self.transport.read_line()
            try:
                parts = line.decode("ascii").strip().split(separator)
                if len(parts) != count:
                    raise ValueError
                return [_finite(cast(p)) for p in parts]
            except (UnicodeDecodeError, ValueError):
                raise ReplyError(f"reply {line[:60]!r} is not {count} finite value(s)") from None

        return self._exchange(command, read)

    def query_block(self, command: str, count: int, dtype: np.dtype = INT16) -> np.ndarray:
        return self.query_block_message(command.encode("ascii"), command, count, dtype)

    def query_block_message(self, message: bytes, command: str, count: int, dtype: np.dtype = INT16) -> np.ndarray:
        """A query (which may itself carry a block) whose reply is a block of ``count`` values."""

        def read() -> np.ndarray:
            payload = read_block(self.transport.read_exact, self.transport.read_line, count * dtype.itemsize)
            return decode_values(payload, count, "block", dtype)

        return self._exchange(command, read, message)

    def write_checked(self, command: str) -> None:
        """Send a command and the error query in one message: one round trip, never resent."""
        self._write_checked(command.encode("ascii") + b";:SYST:ERR?\n", command)

    def write_block_checked(self, header: str, values: np.ndarray, dtype: np.dtype = INT16) -> None:
        """Send ``header <block>`` and the error query in one message: one round trip."""
        self._write_checked(header.encode("ascii") + b" " + encode_block(values, dtype) + b";:SYST:ERR?\n", header)

    def _write_checked(self, message: bytes, command: str) -> None:
        """If the acknowledgement is lost the command is not repeated (it may have been
        applied); the error queue, asked again, decides."""
        with self._lock, self._guard():
            self.last_command = command
            started = time.monotonic()
            try:
                self.transport.write(message)
                reply = self.transport.read_line().decode("ascii").strip()
                code, text = self._parse_error(reply)
            except (InstrumentTimeout, ReplyError, LinkError, UnicodeDecodeError) as err:
                self._note(f"{command!r}: acknowledgement lost ({err}); asking the error queue")
                self._recover()
                self.link.note_failure(err, started)
                self.check_errors(command)
                return
        self._raise_if_error(code, text, command)

    def _exchange(self, command: str, read: Callable[[], T], message: bytes | None = None) -> T:
        message = (message if message is not None else command.encode("ascii")) + b"\n"
        failure: DriverError | None = None
        for attempt in range(self.retries + 1):
            with self._lock, self._guard():
                self.last_command = command
                started = time.monotonic()
                try:
                    self.transport.write(message)
                    return read()
                except InstrumentTimeout as err:
                    failure = err
                    self._recover()
                    self.link.note_failure(err, started)
                    if attempt == 0 and self.has_error_queue and command.upper() not in ERROR_QUERIES:
                        self._raise_queued_error(command)
                except (ReplyError, LinkError) as err:
                    failure = err
                    self._recover()
                    self.link.note_failure(err, started)
            if attempt < self.retries:
                self.link.retries += 1
            self._note(f"{command!r}: {failure}; " + ("retrying" if attempt < self.retries else "giving up"))
        assert failure is not None
        raise type(failure)(self._context(failure)) from None

    @contextmanager
    def _guard(self):
        """An exchange cut short (Ctrl-C, SIGTERM) leaves its reply on the wire; the next
        exchange discards it first instead of taking it for its own."""
        if self._interrupted:
            self._interrupted = False
            self._recover()
        try:
            yield
        except BaseException as err:
            if not isinstance(err, Exception):
                self._interrupted = True
            raise

    def _recover(self) -> None:
        try:
            self.transport.recover()
        except DriverError as err:
            raise LinkError(self._context(err)) from None

    def _context(self, err: Exception) -> str:
        return f"{self.name} ({self.transport.resource}), last command {self.last_command!r}: {err}"

    def _note(self, text: str) -> None:
        log.info("%s: %s", self.name, text)
        note = getattr(self.transport, "note", None)
        if note is not None:
            note(text)

    # ---- error queue ---------------------------------------------------------------

    def next_error(self) -> tuple[int, str]:
        def read() -> tuple[int, str]:
            line = self.transport.read_line()
            try:
                return self._parse_error(line.decode("ascii").strip())
            except UnicodeDecodeError:
                raise ReplyError(f"non-ASCII reply: {line[:60]!r}") from None

        return self._exchange("SYST:ERR?", read)

    def check_errors(self, after: str = "") -> None:
        """Drain the queue; raise the oldest error, if any, as an ``InstrumentError``."""
        if not self.has_error_queue:
            return
        first: tuple[int, str] | None = None
        for _ in range(MAX_ERRORS_DRAINED):
            code, message = self.next_error()
            if code == 0:
                break
            first = first or (code, message)
        if first:
            raise InstrumentError(self.name, first[0], first[1], after)

    def _raise_if_error(self, code: int, message: str, after: str) -> None:
        """An empty queue answers 0; otherwise drain it so the next command starts clean."""
        if code == 0:
            return
        try:
            self.check_errors(after)
        except InstrumentError:
            pass
        raise InstrumentError(self.name, code, message, after)

    def _raise_queued_error(self, command: str) -> None:
        """A query that got no reply usually failed: surface the instrument's reason."""
        try:
            self.check_errors(command)
        except InstrumentTimeout:
            return

    def _parse_error(self, reply: str) -> tuple[int, str]:
        code, sep, message = reply.partition(",")
        try:
            return int(code), message.strip().strip('"')
        except ValueError:
            raise ReplyError(f"{self.name}: error-queue reply {reply!r} is not '<code>,\"<message>\"'") from None

    # ---- identity and provenance ---------------------------------------------------

    def identify(self) -> str:
        return self.query("*IDN?")

    def snapshot(self) -> dict[str, Any]:
        """Every declared setting's current value, for the run manifest."""
        state: dict[str, Any] = {"resource": self.transport.resource, "idn": self.identify()}
        for klass in type(self).__mro__:
            for name, attr in vars(klass).items():
                if isinstance(attr, measurement) and name not in state:
                    state[name] = getattr(self, name)
        return state

    def close(self) -> None:
        self.transport.close()
