"""Instrument-side SCPI: byte stream → messages → commands → replies.

Parses the way real instruments do (PROTOCOL.md "Framing"): short and long header
forms, case-insensitive, optional leading ``:``, several commands per message joined
by ``;`` with the SCPI rule that a command without a leading ``:`` continues the
previous command's subsystem, quoted strings and IEEE 488.2 definite-length blocks
whose bytes may contain ``\\n`` or ``;``. A failing command pushes onto the error
queue and changes nothing. Every twin instrument (board, SMU, temperature
controller) is an ``ScpiDevice`` with its own command table.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

ERROR_QUEUE_DEPTH = 32
LOOKUP_CACHE = 4096  # distinct headers remembered once matched


class ScpiError(Exception):
    """A command failed; ``code`` and ``message`` go on the error queue."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code},{message}")
        self.code = code
        self.message = message


class IncompleteMessage(Exception):
    """The stream holds only the start of a message so far."""


@dataclass(frozen=True)
class Block:
    """An IEEE 488.2 definite-length block parameter."""

    data: bytes


Param = bytes | Block
Reply = str | bytes | None  # str: ASCII reply; bytes: a block's payload; None: no reply
Handler = Callable[[list[Param]], Reply]


class ErrorQueue:
    """SCPI error queue: FIFO of depth 32, the last slot reserved for overflow."""

    def __init__(self) -> None:
        self._entries: list[tuple[int, str]] = []

    def push(self, code: int, message: str) -> None:
        if len(self._entries) < ERROR_QUEUE_DEPTH - 1:
            self._entries.append((code, message))
        elif len(self._entries) == ERROR_QUEUE_DEPTH - 1:
            self._entries.append((-350, "Queue overflow"))

    def pop(self) -> tuple[int, str]:
        return self._entries.pop(0) if self._entries else (0, "No error")

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _mnemonic_forms(keyword: str) -> tuple[str, str]:
    """``VOLTage`` → (``VOLT``, ``VOLTAGE``): the short form is the capitals and digits."""
    short = "".join(ch for ch in keyword if ch.isupper() or ch.isdigit() or ch == "*")
    return short.upper(), keyword.upper()


def _expand_optional(pattern: str) -> list[list[str]]:
    """Every header a pattern admits: each ``[...]`` node may be given or left out on its own,
    as SCPI defines optional nodes. ``SOURce:VOLTage[:LEVel][:IMMediate]`` admits
    ``SOUR:VOLT``, ``SOUR:VOLT:LEV``, ``SOUR:VOLT:IMM`` and ``SOUR:VOLT:LEV:IMM``."""
    variants: list[list[str]] = [[]]
    for group in re.finditer(r"\[([^\]]*)\]|([^:\[\]]+)", pattern):
        if group.group(1) is not None:
            nodes = [n for n in group.group(1).split(":") if n]
            variants = [v + nodes for v in variants] + variants
        else:
            variants = [v + [group.group(2)] for v in variants]
    return [v for i, v in enumerate(variants) if v and v not in variants[:i]]


def _node_matches(token: str, forms: tuple[str, str]) -> bool:
    """A header node against a keyword's short and long form; a numeric suffix of 1 is the
    same node without one (``SOUR1`` is ``SOUR``), as SCPI's suffix rule says."""
    if token in forms:
        return True
    return token.endswith("1") and not forms[0][-1:].isdigit() and token[:-1] in forms


MAX_TEXT_BYTES = 65536
"""Bytes of one message outside its blocks: far beyond any real command line, and small
enough that a client streaming text without a newline cannot hold memory or the rig."""


class MessageTooLarge(Exception):
    """A client sent more than a message may hold; its session is dropped (SCPI -223)."""


_FRAMING = re.compile(rb"[\n\"'#]")
_IN_QUOTE = {0x22: re.compile(rb'[\n"]'), 0x27: re.compile(rb"[\n']")}


def _block_header(buffer: bytes | bytearray, i: int) -> tuple[int, int] | None:
    """At a ``#``: the block's (header end, payload length), or ``None`` if it is no block.

    A block is ``#`` + one digit 1-9 + that many ASCII digits. Anything else (``#0``,
    ``#3-99``, ``#1x``) is an ordinary byte, so a malformed length can never move a
    parser backwards or make it wait for bytes that will not come. Raises
    ``IncompleteMessage`` while the header's digits have not all arrived.
    """
    n = len(buffer)
    if i + 1 >= n:
        raise IncompleteMessage
    if not 0x31 <= buffer[i + 1] <= 0x39:
        return None
    head_end = i + 2 + buffer[i + 1] - 0x30
    digits = bytes(buffer[i + 2 : min(head_end, n)])
    if digits and not digits.isdigit():
        return None
    if head_end > n:
        raise IncompleteMessage
    return head_end, int(digits)


def find_message_end(buffer: bytes | bytearray) -> int:
    """Index just past the ``\\n`` that ends the first message; blocks are skipped whole.

    Raises ``IncompleteMessage`` when more bytes are needed.
    """
    messages = MessageFramer(max_text=sys.maxsize, max_block=sys.maxsize).feed(bytes(buffer))
    if not messages:
        raise IncompleteMessage
    return len(messages[0])


class MessageFramer:
    """Cuts a byte stream into messages, scanning each byte once however it arrives.

    The scan position, quote state and the size of the message so far survive between
    calls, so a client that dribbles a long line costs linear time, not a rescan per
    chunk. ``max_text`` bounds the bytes outside blocks and ``max_block`` each block's
    declared length (checked from the header, before its bytes are buffered).
    """

    def __init__(self, max_text: int = MAX_TEXT_BYTES, max_block: int = 0) -> None:
        self.max_text = max_text
        self.max_block = max_block
        self._buffer = bytearray()
        self._reset_scan()

    def _reset_scan(self) -> None:
        self._pos = 0  # may run past the buffer's end while a block's bytes are awaited
        self._quote = 0
        self._text = 0  # bytes outside blocks before _pos

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; every message they complete, newline included."""
        self._buffer.extend(data)
        messages = []
        while (end := self._scan()) is not None:
            messages.append(bytes(self._buffer[:end]))
            del self._buffer[:end]
            self._reset_scan()
        return messages

    def clear(self) -> None:
        self._buffer.clear()
        self._reset_scan()

    def _scan(self) -> int | None:
        buffer, n = self._buffer, len(self._buffer)
        i = self._pos
        try:
            while i < n:
                if self._quote:  # no block inside a string; a newline still ends the message
                    match = _IN_QUOTE[self._quote].search(buffer, i)
                    if match is None:
                        self._count_text(n - i)
                        i = n
                        break
                    self._count_text(match.start() - i)
                    if buffer[match.start()] == 0x0A:
                        return match.start() + 1
                    self._count_text(1)
                    self._quote = 0
                    i = match.start() + 1
                    continue
                match = _FRAMING.search(buffer, i)
                if match is None:
                    self._count_text(n - i)
                    i = n
                    break
                at = match.start()
                self._count_text(at - i)
                c = buffer[at]
                if c == 0x0A:
                    return at + 1
                if c == 0x23:
                    block = _block_header(buffer, at)
                    if block is not None:
                        head_end, length = block
                        if length > self.max_block or head_end + length > self.max_text + self.max_block:
                            raise MessageTooLarge(f"block of {length} bytes, at most {self.max_block}")
                        self._count_text(head_end - at)
                        i = head_end + length
                        continue
                else:
                    self._quote = c
                self._count_text(1)
                i = at + 1
        except IncompleteMessage:
            pass  # a block header cut short: rescan it (a few bytes) when more arrive
        self._pos = i
        return None

    def _count_text(self, count: int) -> None:
        self._text += count
        if self._text > self.max_text:
            raise MessageTooLarge(f"more than {self.max_text} bytes of text without a newline")


def _split_top_level(text: bytes, separator: int) -> list[bytes]:
    """Split on ``separator`` outside quotes and blocks (the framing's idea of a block)."""
    parts, start, i, n, quote = [], 0, 0, len(text), 0
    while i < n:
        c = text[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):
            quote = c
        elif c == 0x23:
            try:
                block = _block_header(text, i)
            except IncompleteMessage:
                block = None
            if block is not None:
                i = block[0] + block[1]
                continue
        elif c == separator:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _parse_param(token: bytes) -> Param:
    """A block keeps every payload byte (it may end in whitespace); text is stripped."""
    token = token.lstrip()
    if token[:1] == b"#" and token[1:2].isdigit() and token[1:2] != b"0":
        try:
            block = _block_header(token, 0)
        except IncompleteMessage:
            block = None
        if block is None:
            raise ScpiError(-161, "Invalid block data; malformed length")
        head_end, length = block
        data = token[head_end : head_end + length]
        if len(data) != length or token[head_end + length :].strip():
            raise ScpiError(-161, "Invalid block data; length does not match")
        return Block(data)
    token = token.rstrip()
    if len(token) >= 2 and token[:1] in (b"'", b'"') and token[-1:] == token[:1]:
        return token[1:-1]
    return token


def encode_block(payload: bytes) -> bytes:
    length = str(len(payload)).encode()
    return b"#" + str(len(length)).encode() + length + payload


class ScpiDevice:
    """Base of every twin instrument: owns the error queue and dispatches commands."""

    max_block_bytes = 0
    """The largest block any command of this device takes; a longer one is refused from
    its header, before its bytes are buffered."""

    reply_terminator = b"\n"
    has_error_queue = True  # SCPI's SYSTem:ERRor?; an instrument without one reports through *ESR? alone

    def __init__(self) -> None:
        self.errors = ErrorQueue()
        self.event_status = 0  # IEEE 488.2 standard event status register (*ESR?)
        self._keywords: list[tuple[list[tuple[str, str]], bool, Handler]] = []
        self._found: dict[tuple[tuple[str, ...], bool], Handler] = {}  # headers as sent, once matched
        self.command("*CLS", lambda p: self._no_params(p) or self._clear_status())
        self.command("*OPC?", lambda p: self._no_params(p) or "1")
        self.command("*ESR?", lambda p: self._no_params(p) or self._read_event_status())
        if self.has_error_queue:
            self.command("SYSTem:ERRor[:NEXT]?", self._error_query)

    # ---- command table -------------------------------------------------------------

    def command(self, pattern: str, handler: Handler) -> None:
        """Register a header such as ``READ:VOLTage?`` (the ``?`` makes it a query)."""
        is_query = pattern.endswith("?")
        self._found.clear()  # a later registration may answer a header differently
        for keywords in _expand_optional(pattern.rstrip("?")):
            forms = [_mnemonic_forms(k) for k in keywords]
            self._keywords.append((forms, is_query, handler))

    def _lookup(self, tokens: list[str], is_query: bool) -> Handler | None:
        key = (tuple(tokens), is_query)
        cached = self._found.get(key)
        if cached is not None:
            return cached
        for forms, query, handler in self._keywords:
            if query != is_query or len(forms) != len(tokens):
                continue
            if all(_node_matches(t, form) for t, form in zip(tokens, forms)):
                if len(self._found) >= LOOKUP_CACHE:  # headers a client made up must not grow it for ever
                    self._found.clear()
                self._found[key] = handler
                return handler
        return None

    # ---- stream handling -----------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Consume bytes from the wire; return whatever replies they produce. An oversized
        message is dropped whole, with -223 on the error queue."""
        try:
            return self._default_session.feed(data)
        except MessageTooLarge:
            return b""

    @property
    def _default_session(self) -> Session:
        if not hasattr(self, "_session"):
            self._session = Session(self)
        return self._session

    def wire_time(self, n_bytes: int) -> None:
        """Hook: bytes take time on the wire (the board's twin advances its clock)."""

    def handle_message(self, message: bytes) -> bytes:
        """Execute one newline-terminated message; reply with the queries' answers."""
        body = message[:-1] if message.endswith(b"\n") else message
        replies: list[bytes] = []
        path: list[str] = []
        for command in _split_top_level(body, 0x3B):  # ';'
            command = command.lstrip()
            if not command.strip():
                continue
            try:
                reply, path = self._execute(command, path)
            except ScpiError as err:
                self.report_error(err.code, err.message)
                continue
            except Exception as err:  # noqa: BLE001 - a firmware bug must cost one command, never the device
                self.report_error(-300, f"Device-specific error; {type(err).__name__}: {err}"[:200])
                continue
            if reply is not None:
                replies.append(encode_block(reply) if isinstance(reply, bytes) else reply.encode())
        return b";".join(replies) + self.reply_terminator if replies else b""

    def report_error(self, code: int, message: str) -> None:
        """On the error queue, and the event status bit of its class: -1xx command, -2xx
        execution, -3xx device-specific, -4xx query error."""
        self.errors.push(code, message)
        self.event_status |= {1: 32, 2: 16, 3: 8, 4: 4}.get(-code // 100, 0)

    def _clear_status(self) -> None:
        self.errors.clear()
        self.event_status = 0

    def _read_event_status(self) -> str:
        value, self.event_status = self.event_status, 0
        return str(value)

    def _execute(self, command: bytes, path: list[str]) -> tuple[Reply, list[str]]:
        head, _, rest = command.partition(b" ")
        head = head.rstrip()
        try:
            header = head.decode("ascii")
        except UnicodeDecodeError:
            raise ScpiError(-100, "Command error; non-ASCII header") from None
        params = [_parse_param(t) for t in _split_top_level(rest, 0x2C)] if rest.strip() else []
        is_query = header.endswith("?")
        header = header.rstrip("?")
        if header.startswith("*"):
            handler = self._lookup([header.upper()], is_query)
            next_path = path
        else:
            absolute = header.startswith(":")
            tokens = [t.upper() for t in header.lstrip(":").split(":")]
            handler = self._lookup(tokens, is_query)
            if handler is None and not absolute and path:
                tokens = path + tokens
                handler = self._lookup(tokens, is_query)
            next_path = tokens[:-1]
        if handler is None:
            raise ScpiError(-113, f"Undefined header; {head.decode('ascii', 'replace')}")
        return handler(params), next_path

    # ---- common commands -----------------------------------------------------------

    @staticmethod
    def _no_params(params: list[Param]) -> None:
        if params:
            raise ScpiError(-100, "Command error; unexpected parameter")

    def _error_query(self, params: list[Param]) -> str:
        self._no_params(params)
        code, message = self.errors.pop()
        return f'{code},"{message}"'


# ---- parameter helpers used by every device -----------------------------------------


def expect_count(params: list[Param], count: int) -> None:
    if len(params) < count:
        raise ScpiError(-109, f"Missing parameter; expected {count}, got {len(params)}")
    if len(params) > count:
        raise ScpiError(-100, f"Command error; expected {count} parameters, got {len(params)}")


def as_text(param: Param) -> str:
    if isinstance(param, Block):
        raise ScpiError(-224, "Illegal parameter value; block where a value was expected")
    try:
        return param.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ScpiError(-224, "Illegal parameter value; not ASCII") from None


def as_float(param: Param, name: str) -> float:
    text = as_text(param)
    try:
        value = float(text)
    except ValueError:
        raise ScpiError(-224, f"Illegal parameter value; {name} {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ScpiError(-224, f"Illegal parameter value; {name} must be finite")
    return value


def as_int(param: Param, name: str) -> int:
    text = as_text(param)
    try:
        return int(text)
    except ValueError:
        raise ScpiError(-224, f"Illegal parameter value; {name} {text!r} is not an integer") from None


def in_range(value: float, low: float, high: float, name: str) -> None:
    if not low <= value <= high:
        raise ScpiError(-222, f"Data out of range; {name} {value:g} not in {low:g}..{high:g}")


def as_block(param: Param, name: str) -> bytes:
    if not isinstance(param, Block):
        raise ScpiError(-224, f"Illegal parameter value; {name} must be a binary block")
    return param.data


class Session:
    """One client's byte stream into a device: its own input buffer, the device's state.

    A device served to several clients (TCP connections) has one session each, so
    partial messages from one never mix with another's. A client that sends more than
    a message may hold (``MessageTooLarge``) gets ``-223`` on the device's error queue;
    the server decides what else to do (drop the connection, flush the serial line).
    """

    def __init__(self, device: ScpiDevice) -> None:
        self.device = device
        self._framer = MessageFramer(max_text=MAX_TEXT_BYTES, max_block=device.max_block_bytes)

    def feed(self, data: bytes) -> bytes:
        self.device.wire_time(len(data))
        out = bytearray()
        try:
            messages = self._framer.feed(data)
        except MessageTooLarge as err:
            self._framer.clear()
            self.device.report_error(-223, f"Too much data; {err}")
            raise
        for message in messages:
            out.extend(self.device.handle_message(message))
        self.device.wire_time(len(out))
        return bytes(out)

    def clear(self) -> None:
        """Forget any partial message (a device clear)."""
        self._framer.clear()
