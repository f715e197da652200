"""IEEE 488.2 definite-length blocks, from the controller's side of the wire."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labctl_drivers.errors import ReplyError

INT16 = np.dtype("<i2")


def encode_block(values: np.ndarray, dtype: np.dtype = INT16) -> bytes:
    payload = np.ascontiguousarray(values, dtype=dtype).tobytes()
    length = str(len(payload)).encode()
    return b"#" + str(len(length)).encode() + length + payload


def read_block(read_exact: Callable[[int], bytes], read_line: Callable[[], bytes], expected: int | None = None) -> bytes:
    """Read one block reply: ``#``, digit count, length, payload, then ``\\n``.

    With ``expected`` (bytes), a header announcing any other length is refused before
    the payload is read: a damaged or hostile header must not make us wait for, or
    allocate, gigabytes that will never be right.
    """
    head = read_exact(2)
    if head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
        rest = head + (read_line() if not head.endswith(b"\n") else b"")
        raise ReplyError(f"expected a definite-length block, got {rest[:60]!r}")
    digits = read_exact(head[1] - 0x30)
    if not digits.isdigit():
        raise ReplyError(f"malformed block length {digits!r}")
    length = int(digits)
    if expected is not None and length != expected:
        raise ReplyError(f"block announces {length} bytes, expected {expected}")
    payload = read_exact(length)
    tail = read_line()
    if tail.strip():
        raise ReplyError(f"unexpected bytes after block: {tail[:60]!r}")
    return payload


def decode_values(payload: bytes, count: int, what: str, dtype: np.dtype = INT16) -> np.ndarray:
    if len(payload) != count * dtype.itemsize:
        raise ReplyError(f"{what}: block holds {len(payload)} bytes, expected {count * dtype.itemsize}")
    return np.frombuffer(payload, dtype=dtype).astype(np.int32)
