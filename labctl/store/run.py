"""Runs in the store: where each table's parts go, and the manifest that describes the run.

Layout (DESIGN.md)::

    <root>/<table>/chip=<chip>/run=<run_id>/part-<n>.parquet
    <root>/runs/<run_id>/manifest.json

The manifest is rewritten atomically at every status change, so it always reflects
the last completed step, also after a crash.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from collections.abc import Callable
from typing import Any

from labctl.errors import UsageError


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by start time, unique without coordination."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RunStore:
    """A store rooted at a local directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def check_writable(self) -> None:
        """Fail before a run starts, not halfway through it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".labctl-probe-"):
                pass
        except OSError as err:
            reason = err.strerror or str(err)
            raise UsageError(f"data directory {str(self.root)!r} is not writable: {reason}") from None

    def create_run(self, chip: str, manifest: dict[str, Any]) -> Run:
        run = Run(self, chip, new_run_id())
        run.manifest.update(manifest)
        run.write_manifest()
        return run

    def manifest_path(self, run_id: str) -> Path:
        return self.root / "runs" / run_id / "manifest.json"


class Run:
    """One run's table writers, manifest and resume state."""

    def __init__(self, store: RunStore, chip: str, run_id: str) -> None:
        self.store = store
        self.chip = chip
        self.id = run_id
        self.step = "setup"
        self._writers: dict[tuple[str, str], Any] = {}
        self.manifest: dict[str, Any] = {
            "run_id": run_id,
            "chip": chip,
            "status": "running",
            "started_utc": utc_now(),
            "ended_utc": None,
            "steps_done": [],
        }

    @classmethod
    def open(cls, store: RunStore, run_id: str) -> Run:
        """An existing run, as its manifest left it (to resume it)."""
        path = store.manifest_path(run_id)
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"no run {run_id!r} in {str(store.root)!r}") from None
        except (OSError, ValueError) as err:
            raise UsageError(f"run {run_id!r}: manifest cannot be read: {err}") from None
        run = cls(store, manifest["chip"], run_id)
        run.manifest = manifest
        return run

    @property
    def directory(self) -> Path:
        return self.store.manifest_path(self.id).parent

    def partition(self, table: str) -> Path:
        return self.store.root / table / f"chip={self.chip}" / f"run={self.id}"

    def table(self, name: str):  # -> TableWriter, imported lazily with pyarrow
        key = (name, self.step)
        if key not in self._writers:
            from labctl.store.schemas import SCHEMAS
            from labctl.store.writer import TableWriter

            self._writers[key] = TableWriter(self.partition(name), SCHEMAS[name], prefix=f"{self.step}-")
        return self._writers[key]

    def begin_step(self, step: str, keep: Callable[[str], bool] = lambda name: False) -> None:
        """Start (or restart) a step: parts an interrupted attempt of it left are removed,
        except those ``keep`` names (journalled units a resumed step continues from)."""
        self.step = step
        for table in self.store.root.iterdir() if self.store.root.is_dir() else []:
            partition = table / f"chip={self.chip}" / f"run={self.id}"
            for part in partition.glob(f"part-{step}-*.parquet") if partition.is_dir() else []:
                if not keep(part.name):
                    part.unlink()

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def step_done(self, step: str, **results: Any) -> None:
        """Flush measurements, then record the step: the manifest never claims unflushed data."""
        self.flush()
        self.manifest["steps_done"].append(step)
        self.manifest.setdefault("steps", {})[step] = results
        self.write_manifest()

    def finish(self, status: str, **fields: Any) -> None:
        self.flush()
        self.manifest.update(fields)
        self.manifest["status"] = status
        self.manifest["ended_utc"] = utc_now()
        self.manifest["tables"] = self.table_totals()
        self.write_manifest()

    def table_totals(self) -> dict[str, dict[str, int]]:
        """Rows and parts of this run in every table, as on disk (a resumed run included)."""
        import pyarrow.parquet as pq

        totals: dict[str, dict[str, int]] = {}
        for table in sorted(self.store.root.iterdir()) if self.store.root.is_dir() else []:
            partition = table / f"chip={self.chip}" / f"run={self.id}"
            parts = sorted(partition.glob("part-*.parquet")) if partition.is_dir() else []
            if parts:
                totals[table.name] = {"rows": sum(pq.read_metadata(p).num_rows for p in parts), "parts": len(parts)}
        return totals

    def write_manifest(self) -> None:
        self.write_json("manifest.json", self.manifest)

    def write_json(self, name: str, value: Any) -> None:
        """Atomically: a crash leaves the old file or the new one, never half of either."""
        path = self.directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{name}.tmp")
        with open(temporary, "w", encoding="utf-8") as sink:
            json.dump(value, sink, indent=2, default=_json_default)
            sink.write("\n")
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temporary, path)

    def read_json(self, name: str) -> Any:
        path = self.directory / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
