"""Append-only Parquet writer for one table of one run.

Rows are buffered and written as whole part files: each part goes to a hidden
temporary name, is fsynced and then renamed, so a crash leaves either a complete
part or none, and readers (which skip dot-files) never see a half-written file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROWS_PER_PART = 1_000_000
ROW_GROUP_ROWS = 256_000


class TableWriter:
    def __init__(self, directory: Path, schema: pa.Schema, rows_per_part: int = ROWS_PER_PART,
                 prefix: str = "") -> None:
        self.directory = directory
        self.schema = schema
        self.rows_per_part = rows_per_part
        self.prefix = prefix  # parts of one step carry its name, so a resumed run can tell them apart
        for stale in directory.glob(".part-*.tmp") if directory.is_dir() else []:
            stale.unlink(missing_ok=True)  # half-written by a process that died: never a part
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.parts_written = 0
        self.rows_written = 0

    def append(self, columns: dict[str, Any]) -> None:
        """Add rows given as equal-length columns (numpy arrays or scalars broadcast by the caller)."""
        batch = pa.RecordBatch.from_pydict(columns, schema=self.schema)
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._write(f"part-{self.prefix}{self.parts_written:05d}.parquet", table)
        self._pending.clear()
        self._pending_rows = 0

    def write_part(self, name: str, columns: dict[str, Any]) -> None:
        """Write these rows at once as their own part ``part-<name>.parquet`` (a journalled unit)."""
        self.flush()
        self._write(f"part-{name}.parquet", pa.Table.from_pydict(columns, schema=self.schema))

    def _write(self, name: str, table: pa.Table) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{name}.tmp"
        with open(temporary, "wb") as sink:
            pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temporary, self.directory / name)
        _fsync_directory(self.directory)
        self.parts_written += 1
        self.rows_written += table.num_rows


def _fsync_directory(path: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
