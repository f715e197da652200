"""Append-only Parquet writer for one table of one run.

Rows are buffered and written as whole part files through the store's filesystem
(``labctl.store.fs``): locally a hidden temporary name, fsynced and renamed; on object
storage one PUT. A crash leaves either a complete part or none, and readers (which
skip dot-files) never see a half-written file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from labctl.store.fs import StoreFS

ROWS_PER_PART = 1_000_000
ROW_GROUP_ROWS = 256_000


class TableWriter:
    def __init__(self, directory: Path | str, schema: pa.Schema, rows_per_part: int = ROWS_PER_PART,
                 prefix: str = "", fs: StoreFS | None = None, dictionary: list[str] | None = None) -> None:
        self.fs = fs or StoreFS(directory)
        self.directory = str(directory) if fs is not None else self.fs.base
        self.schema = schema
        self.rows_per_part = rows_per_part
        self.prefix = prefix  # parts of one step carry its name, so a resumed run can tell them apart
        self.dictionary = True if dictionary is None else dictionary  # the columns Parquet dictionary-encodes
        if not self.fs.remote:  # object storage has no half-written objects to clear
            for name in self.fs.listdir(self.directory):
                if name.startswith(".part-") and name.endswith(".tmp"):
                    self.fs.delete(f"{self.directory}/{name}")  # half-written by a process that died
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
        self.fs.write_table_atomic(f"{self.directory}/{name}", table, compression="zstd",
                                   row_group_size=ROW_GROUP_ROWS, use_dictionary=self.dictionary)
        self.parts_written += 1
        self.rows_written += table.num_rows
