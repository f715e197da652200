"""Append-only Parquet writer for one table of one run.

Rows are buffered and written as whole part files through the store's filesystem
(``labctl.store.fs``): locally a hidden temporary name, fsynced and renamed; on object
storage one PUT. A crash leaves either a complete part or none, and readers (which
skip dot-files) never see a half-written file.

A full part is encoded and written on a background thread (Parquet's encoder releases the
GIL), so measuring goes on while it is compressed and fsynced, and two parts encode at
once on two cores. ``flush`` returns only when every part handed over is on disk, and a
failed write is raised there (or at the next append): what a run's journal or manifest
records as stored is stored.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from labctl.store.arrow_columns import record_batch
from labctl.store.fs import StoreFS
from labctl.store.schemas import Layout

ROWS_PER_PART = 262_144  # four 256x256 array reads: parts small enough that two encode at once
ROW_GROUP_ROWS = 262_144
WRITE_BATCH_ROWS = 65_536  # values a column writer takes at a time: pyarrow's 1,024 cost 8 % of a part's encoding
COMPRESSION = "zstd"  # 10 % smaller than snappy on a calibration's tables; encoded on two threads it keeps up
WRITE_THREADS = 2  # parts encoded at once, over all writers
IN_FLIGHT = 2  # parts one writer may have handed over and not yet written (each holds its rows in memory)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    """A forked child has none of its parent's threads: it starts a pool of its own."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _writers_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="labctl-parquet")
        return _pool


class TableWriter:
    def __init__(self, directory: Path | str, schema: pa.Schema, rows_per_part: int = ROWS_PER_PART,
                 prefix: str = "", fs: StoreFS | None = None, layout: Layout | None = None) -> None:
        self.fs = fs or StoreFS(directory)
        self.directory = str(directory) if fs is not None else self.fs.base
        self.layout = layout or Layout(dictionary=tuple(schema.names))  # by default a dictionary is tried everywhere
        self.schema = self.layout.write_schema(schema)  # as batches are built: dictionary columns already encoded
        self.rows_per_part = rows_per_part
        self.prefix = prefix  # parts of one step carry its name, so a resumed run can tell them apart
        if not self.fs.remote:  # object storage has no half-written objects to clear
            for name in self.fs.listdir(self.directory):
                if name.startswith(".part-") and name.endswith(".tmp"):
                    self.fs.delete(f"{self.directory}/{name}")  # half-written by a process that died
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._parts_named = 0
        self._writing: list[Future] = []
        self._counts = threading.Lock()
        self.parts_written = 0  # on disk
        self.rows_written = 0

    def append(self, columns: dict[str, Any]) -> None:
        """Add rows given as equal-length columns (numpy arrays or scalars broadcast by the caller)."""
        batch = record_batch(columns, self.schema)
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self.rows_per_part:
            self._hand_over()

    def flush(self) -> None:
        """Every row appended so far on disk (raises what a background write raised)."""
        self._hand_over()
        self._wait(0)

    def write_part(self, name: str, columns: dict[str, Any]) -> None:
        """Write these rows at once as their own part ``part-<name>.parquet`` (a journalled unit)."""
        self.flush()
        self._write(f"part-{name}.parquet", pa.Table.from_batches([record_batch(columns, self.schema)]))

    def _hand_over(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        name = f"part-{self.prefix}{self._parts_named:05d}.parquet"
        self._parts_named += 1
        self._pending = []
        self._pending_rows = 0
        self._wait(IN_FLIGHT - 1)
        self._writing.append(_writers_pool().submit(self._write, name, table))

    def _wait(self, in_flight: int) -> None:
        while len(self._writing) > in_flight:
            self._writing.pop(0).result()

    def _write(self, name: str, table: pa.Table) -> None:
        layout = self.layout
        self.fs.write_table_atomic(f"{self.directory}/{name}", table,
                                   compression=layout.compression(table.schema, COMPRESSION),
                                   write_batch_size=WRITE_BATCH_ROWS,
                                   row_group_size=ROW_GROUP_ROWS, use_dictionary=list(layout.dictionary),
                                   use_byte_stream_split=list(layout.byte_stream_split) or False,
                                   write_statistics=layout.statistics(table.schema),
                                   store_schema=not layout.arrow_dictionary)
        with self._counts:
            self.parts_written += 1
            self.rows_written += table.num_rows
