"""Reading the store back: runs from their manifests, tables as pandas or DuckDB.

The tables are plain Hive-partitioned Parquet, so any tool reads them; this is the
convenience layer labctl's own commands (runs, compare, export-model) stand on.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from labctl.errors import UsageError
from labctl.names import check_run_id, is_run_id
from labctl.redact import redact
from labctl.store.fs import StoreFS, is_remote

TABLES = ("reads", "pulses", "cells", "readout", "refine", "mvm", "maintain", "validation", "solve", "drift")


class Store:
    def __init__(self, root: Path | str) -> None:
        self.root = redact(str(root)) if is_remote(root) else root  # for messages: no credentials
        self.fs = StoreFS(root)

    def run_file(self, run_id: str, name: str) -> bytes | None:
        return self.fs.read(self.fs.path("runs", check_run_id(run_id), name))

    def manifests(self) -> list[dict[str, Any]]:
        found = []
        for run_id in self.fs.listdir(self.fs.path("runs")):
            if not is_run_id(run_id):
                continue  # a staged run, or nothing of labctl's
            try:
                data = self.run_file(run_id, "manifest.json")
                if data is not None:
                    found.append(json.loads(data))
            except ValueError:
                continue
        return found

    def resolve(self, text: str) -> str:
        """The run a user means: an id, ``latest``, or a unique prefix or tail of an id."""
        return resolve_run_id(self.fs, text, str(self.root))

    def manifest(self, run_id: str) -> dict[str, Any]:
        data = self.run_file(run_id, "manifest.json")
        if data is None:
            raise UsageError(f"no run {run_id!r} in {str(self.root)!r}")
        try:
            manifest = json.loads(data)
        except ValueError as err:
            raise UsageError(f"run {run_id!r}: manifest cannot be read: {err}") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("run_id"), str):
            raise UsageError(f"run {run_id!r}: manifest is not a labctl manifest (no run_id)")
        return manifest

    def runs(self, chip: str | None = None, since: datetime | None = None):
        """One row per run: id, chip, protocol, status, start, end, passed."""
        import pandas as pd

        rows = []
        for m in self.manifests():
            started = pd.Timestamp(m.get("started_utc"))
            if (chip and m.get("chip") != chip) or (since is not None and started < pd.Timestamp(since, tz="UTC")):
                continue
            rows.append({"run_id": m["run_id"], "chip": m.get("chip"),
                         "protocol": m.get("protocol", {}).get("effective", {}).get("name"),
                         "status": observed_status(m), "started_utc": started,
                         "ended_utc": pd.Timestamp(m["ended_utc"]) if m.get("ended_utc") else pd.NaT,
                         "passed": m.get("passed")})
        columns = ["run_id", "chip", "protocol", "status", "started_utc", "ended_utc", "passed"]
        return pd.DataFrame(rows, columns=columns)

    def table(self, name: str, run: str | None = None, chip: str | None = None, columns: list[str] | None = None):
        """A table (all runs, or one) as a pandas DataFrame with its ``chip`` and ``run`` columns."""
        import pyarrow.dataset as ds

        if name not in TABLES:
            raise UsageError(f"unknown table {name!r}: the store has {', '.join(TABLES)}")
        if run is not None:
            check_run_id(run)
        path = self.fs.path(name)
        if not self.fs.listdir(path):
            raise UsageError(f"no {name} table in {str(self.root)!r}")
        dataset = ds.dataset(path, format="parquet", partitioning="hive", filesystem=self.fs.fs)
        condition = None
        for field, value in (("run", run), ("chip", chip)):
            if value is not None:
                clause = ds.field(field) == value
                condition = clause if condition is None else condition & clause
        wanted = None if columns is None else [*columns, "chip", "run"]
        return dataset.to_table(filter=condition, columns=wanted).to_pandas()

    def duckdb(self, name: str):
        """A DuckDB relation over a table (needs the optional ``duckdb`` package)."""
        try:
            import duckdb
        except ImportError:
            raise UsageError("DuckDB is not installed: pip install duckdb") from None
        if self.fs.remote:
            raise UsageError("for a store on object storage, query it with DuckDB's httpfs extension directly")
        return duckdb.sql(f"select * from read_parquet('{self.fs.path(name)}/**/*.parquet', hive_partitioning=true)")


def resolve_run_id(fs: StoreFS, text: str, where: str) -> str:
    """``latest`` is the run started last (any chip); otherwise an exact id, or the one id
    that starts (or ends, the random tail) with ``text``. Ambiguity names the candidates."""
    ids = [run_id for run_id in fs.listdir(fs.path("runs")) if is_run_id(run_id)]
    if text == "latest":
        dated = []
        for run_id in ids:
            try:
                manifest = json.loads(fs.read(fs.path("runs", run_id, "manifest.json")) or b"null")
            except ValueError:
                continue
            if isinstance(manifest, dict):
                dated.append((str(manifest.get("started_utc", "")), run_id))
        if not dated:
            raise UsageError(f"no runs in {where!r}, so no latest run")
        return max(dated)[1]
    check_run_id(text)
    if text in ids:
        return text
    matches = sorted(run_id for run_id in ids if run_id.startswith(text) or run_id.endswith(text))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no run {text!r} in {where!r} (see 'labctl runs list')")
    shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
    raise UsageError(f"run id {text!r} is ambiguous in {where!r}: it matches {shown}")


def open_store(root: Path | str | None = None) -> Store:
    """The run store at ``root`` (default: ``$LABCTL_DATA`` or ``./labdata``)."""
    from labctl.store.root import data_root

    store = Store(data_root(root))
    if not store.fs.listdir(store.fs.base):
        raise UsageError(f"no run store at {str(store.root)!r}")
    return store


def observed_status(manifest: dict) -> str | None:
    """The manifest's status, except that a run still marked ``running`` whose process is
    gone (killed, or stopped by a disk that would not take the word ``failed``) is
    ``interrupted``: resumable, and not running. Runs of other hosts are taken at their word."""
    import socket

    from labctl.store.run import process_alive

    status = manifest.get("status")
    pid = manifest.get("pid")
    if status != "running" or not isinstance(pid, int) or manifest.get("host") != socket.gethostname():
        return status
    return status if process_alive(pid) else "interrupted"
