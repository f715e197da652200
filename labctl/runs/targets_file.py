"""Reading a user's matrix (target conductances in µS, or signed weights) from a file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from labctl.errors import UsageError

SUPPORTED = (".npy", ".csv", ".parquet")


MAX_SIDE = 4096
"""The largest array side a matrix file may declare: beyond any crossbar labctl drives,
and small enough (128 MB of float64 at most) that a hostile file cannot exhaust memory."""
CSV_SCAN_CHUNK = 1 << 20
MAX_FIELD_BYTES = 64  # a number in a CSV field, generously


def read_targets(path: Path | str, kind: str = "targets") -> np.ndarray:
    """The matrix in the file; its shape and values are checked against the chip later.

    A Parquet file holds one column per array column (any names), one row per array row.
    The shape a file declares (a ``.npy`` header, Parquet metadata, a CSV's line and
    field counts) is checked before its values are read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise UsageError(f"{kind} file {str(path)!r}: unsupported type {suffix or '(none)'!r}; "
                         f"use {', '.join(SUPPORTED)}")
    if not path.is_file():
        raise UsageError(f"{kind} file {str(path)!r} not found")
    try:
        if suffix == ".npy":
            _check_shape(path, kind, _npy_shape(path))
            return np.load(path, allow_pickle=False)
        if suffix == ".csv":
            _check_shape(path, kind, _csv_shape(path, kind))
            with warnings.catch_warnings():  # an empty file is a shape error below, not a warning on stderr
                warnings.simplefilter("ignore")
                return np.loadtxt(path, delimiter=",", ndmin=2)
        import pyarrow.parquet as pq

        metadata = pq.ParquetFile(path).metadata
        _check_shape(path, kind, (metadata.num_rows, metadata.num_columns))
        table = pq.read_table(path)
        return np.column_stack([column.to_numpy(zero_copy_only=False) for column in table.columns])
    except UsageError:
        raise
    except Exception as err:  # noqa: BLE001 - numpy and pyarrow raise many kinds; all mean "unreadable"
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"{kind} file {str(path)!r} cannot be read: {first_line}") from None


def _check_shape(path: Path, kind: str, shape: tuple[int, ...]) -> None:
    if len(shape) == 2 and all(0 <= side <= MAX_SIDE for side in shape):
        return
    shown = "x".join(str(side) for side in shape)
    raise UsageError(f"{kind} file {str(path)!r} declares a {shown} matrix: at most {MAX_SIDE}x{MAX_SIDE} "
                     "(one value per cell of one array)")


def _npy_shape(path: Path) -> tuple[int, ...]:
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(handle)  # the header only, not the data it announces
    return tuple(shape)


def _csv_shape(path: Path, kind: str) -> tuple[int, int]:
    """(lines with values, fields of the widest), streamed: a CSV beyond the limits is
    refused a chunk past them, never loaded. A line is also bounded in bytes
    (``MAX_FIELD_BYTES`` a field), so one endless field cannot pass for a small matrix."""
    rows = cols = fields = length = 0
    content = False  # the unfinished line holds something besides whitespace
    with path.open("rb") as handle:
        while chunk := handle.read(CSV_SCAN_CHUNK):
            *ended, rest = chunk.split(b"\n")
            for piece in ended:
                fields += piece.count(b",")
                if content or piece.strip():
                    rows += 1
                    cols = max(cols, fields + 1)
                fields, length, content = 0, 0, False
            fields += rest.count(b",")
            length += len(rest)
            content = content or bool(rest.strip())
            if length > MAX_FIELD_BYTES * MAX_SIDE:
                raise UsageError(f"{kind} file {str(path)!r}: line {rows + 1} is longer than {MAX_FIELD_BYTES * MAX_SIDE} bytes")
            if rows > MAX_SIDE or max(cols, fields + 1) > MAX_SIDE:
                break
    if content:
        rows += 1
    return rows, max(cols, fields + 1 if content else 0)
