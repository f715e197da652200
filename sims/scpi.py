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
from collections.abc import Callable
from dataclasses import dataclass

ERROR_QUEUE_DEPTH = 32


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
    """``SYSTem:ERRor[:NEXT]`` → [[SYSTem, ERRor], [SYSTem, ERRor, NEXT]]."""
    required = re.sub(r"\[[^\]]*\]", "", pattern)
    full = pattern.replace("[", "").replace("]", "")
    variants = [required.split(":"), full.split(":")]
    return [v for i, v in enumerate(variants) if v not in variants[:i]]


def find_message_end(buffer: bytes | bytearray) -> int:
    """Index just past the ``\\n`` that ends the first message; blocks are skipped whole.

    Raises ``IncompleteMessage`` when more bytes are needed.
    """
    i, n, quote = 0, len(buffer), 0
    while i < n:
        c = buffer[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):  # " or '
            quote = c
        elif c == 0x23 and i + 1 < n and 0x31 <= buffer[i + 1] <= 0x39:  # '#' + digit 1-9
            digits = buffer[i + 1] - 0x30
            head_end = i + 2 + digits
            if head_end > n:
                raise IncompleteMessage
            length = int(buffer[i + 2 : head_end])
            i = head_end + length
            if i > n:
                raise IncompleteMessage
            continue
        elif c == 0x0A:
            return i + 1
        i += 1
    raise IncompleteMessage


def _split_top_level(text: bytes, separator: int) -> list[bytes]:
    """Split on ``separator`` outside quotes and blocks."""
    parts, start, i, n, quote = [], 0, 0, len(text), 0
    while i < n:
        c = text[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):
            quote = c
        elif c == 0x23 and i + 1 < n and 0x31 <= text[i + 1] <= 0x39:
            digits = text[i + 1] - 0x30
            length = int(text[i + 2 : i + 2 + digits] or b"0")
            i += 2 + digits + length
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
    if token[:1] == b"#" and len(token) > 1 and token[1:2].isdigit() and token[1:2] != b"0":
        digits = token[1] - 0x30
        length = int(token[2 : 2 + digits])
        data = token[2 + digits : 2 + digits + length]
        if len(data) != length or token[2 + digits + length :].strip():
            raise ScpiError(-100, "Command error; malformed block")
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

    def __init__(self) -> None:
        self.errors = ErrorQueue()
        self._keywords: list[tuple[list[tuple[str, str]], bool, Handler]] = []
        self.command("*CLS", lambda p: self._no_params(p) or self.errors.clear())
        self.command("*OPC?", lambda p: self._no_params(p) or "1")
        self.command("SYSTem:ERRor[:NEXT]?", self._error_query)

    # ---- command table -------------------------------------------------------------

    def command(self, pattern: str, handler: Handler) -> None:
        """Register a header such as ``READ:VOLTage?`` (the ``?`` makes it a query)."""
        is_query = pattern.endswith("?")
        for keywords in _expand_optional(pattern.rstrip("?")):
            forms = [_mnemonic_forms(k) for k in keywords]
            self._keywords.append((forms, is_query, handler))

    def _lookup(self, tokens: list[str], is_query: bool) -> Handler | None:
        for forms, query, handler in self._keywords:
            if query != is_query or len(forms) != len(tokens):
                continue
            if all(t in form for t, form in zip(tokens, forms)):
                return handler
        return None

    # ---- stream handling -----------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Consume bytes from the wire; return whatever replies they produce."""
        return self._default_session.feed(data)

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
                self.errors.push(err.code, err.message)
                continue
            if reply is not None:
                replies.append(encode_block(reply) if isinstance(reply, bytes) else reply.encode())
        return b";".join(replies) + b"\n" if replies else b""

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
    partial messages from one never mix with another's.
    """

    def __init__(self, device: ScpiDevice) -> None:
        self.device = device
        self._buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        self.device.wire_time(len(data))
        self._buffer.extend(data)
        out = bytearray()
        while True:
            try:
                end = find_message_end(self._buffer)
            except IncompleteMessage:
                break
            message = bytes(self._buffer[:end])
            del self._buffer[:end]
            out.extend(self.device.handle_message(message))
        self.device.wire_time(len(out))
        return bytes(out)
