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
    """One run's table writers and manifest."""

    def __init__(self, store: RunStore, chip: str, run_id: str) -> None:
        self.store = store
        self.chip = chip
        self.id = run_id
        self._writers: dict[str, Any] = {}
        self.manifest: dict[str, Any] = {
            "run_id": run_id,
            "chip": chip,
            "status": "running",
            "started_utc": utc_now(),
            "ended_utc": None,
            "steps_done": [],
        }

    def partition(self, table: str) -> Path:
        return self.store.root / table / f"chip={self.chip}" / f"run={self.id}"

    def table(self, name: str):  # -> TableWriter, imported lazily with pyarrow
        if name not in self._writers:
            from labctl.store.schemas import SCHEMAS
            from labctl.store.writer import TableWriter

            self._writers[name] = TableWriter(self.partition(name), SCHEMAS[name])
        return self._writers[name]

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
        self.manifest["tables"] = {
            name: {"rows": w.rows_written, "parts": w.parts_written} for name, w in self._writers.items()
        }
        self.write_manifest()

    def write_manifest(self) -> None:
        path = self.store.manifest_path(self.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(".manifest.json.tmp")
        with open(temporary, "w", encoding="utf-8") as sink:
            json.dump(self.manifest, sink, indent=2, default=_json_default)
            sink.write("\n")
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temporary, path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
