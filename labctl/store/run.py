"""Runs in the store: where each table's parts go, and the manifest that describes the run.

Layout (DESIGN.md)::

    <root>/<table>/chip=<chip>/run=<run_id>/part-<n>.parquet
    <root>/runs/<run_id>/manifest.json

The manifest is rewritten atomically at every status change, so it always reflects
the last completed step, also after a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labctl.errors import UsageError
from labctl.names import check_run_id, is_run_id
from labctl.store import crashpoints
from labctl.redact import redact
from labctl.store.fs import StoreFS, is_remote


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by start time, unique without coordination."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


PROBE_PREFIX = ".labctl-probe-"


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def process_alive(pid: int) -> bool:
    """Whether a process of this host still runs (signal 0 probes without touching it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's, alive
    return True


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RunStore:
    """A store rooted at a local directory or an object-storage URI (``s3://bucket/prefix``)."""

    def __init__(self, root: Path | str) -> None:
        self.root = redact(str(root)) if is_remote(root) else root  # for messages and summaries: no credentials
        self.fs = StoreFS(root)

    def check_writable(self) -> None:
        """Fail before a run starts, not halfway through it.

        The probe file is named after this host and process, so a probe that a kill left
        behind is recognised (its process is gone) and removed by the next check.
        """
        probe = self.fs.path(f"{PROBE_PREFIX}{_host_tag()}-{os.getpid()}")
        try:
            self.fs.makedirs(self.fs.base)
            self._clear_stale_probes()
            if self.fs.remote:
                self.fs.write_atomic(probe, b"")  # one PUT
            else:
                with open(probe, "wb"):
                    pass
            crashpoints.reached("probe")
            self.fs.delete(probe)
        except OSError as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise UsageError(f"data directory {str(self.root)!r} is not writable: {reason}") from None

    def _clear_stale_probes(self) -> None:
        if self.fs.remote:
            return
        stale = re.compile(rf"\.+labctl-probe-{re.escape(_host_tag())}-(\d+)\b")
        for name in self.fs.listdir(self.fs.base):
            match = stale.match(name)
            if match and not process_alive(int(match[1])):
                self.fs.delete(self.fs.path(name))

    def create_run(self, chip: str, manifest: dict[str, Any], prepare: Callable[[Run], None] | None = None) -> Run:
        """A new run, visible only once ``prepare`` has written what a resume needs and the
        manifest is in: a crash at any moment leaves either no run or a resumable one.

        Locally the run's files are staged in a hidden directory that one rename makes
        the run's; a crash while staging leaves that directory, which the chip's next run
        removes (the caller holds the chip's lock, so no other process is staging it).
        """
        run = Run(self, chip, new_run_id())
        run.manifest.update(manifest)
        newest = next(self.runs_newest_first(chip), None)
        run.manifest["sequence"] = (newest[1].get("sequence", 0) if newest else 0) + 1
        final = run.directory
        staging = f".staging-{hashlib.sha256(chip.encode()).hexdigest()[:12]}-"  # any chip name, no prefix clash
        if not self.fs.remote:
            self.fs.remove_dirs(self.fs.path("runs"), prefix=staging)
            run.directory = self.fs.path("runs", staging + run.id)
        try:
            run.hold_reserve()
            if prepare is not None:
                prepare(run)
            run.write_manifest()
            if not self.fs.remote:
                self.fs.rename_dir(run.directory, final)
                run.directory = final
        except OSError as err:
            self.fs.remove_dirs(self.fs.path("runs"), prefix=staging + run.id)
            raise UsageError(f"data directory {str(self.root)!r}: cannot start a run: "
                             f"{getattr(err, 'strerror', None) or err}") from None
        return run

    def runs_newest_first(self, chip: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """This chip's runs with a readable manifest, newest first: by the chip's run
        sequence (each run numbered one past the newest before it), not by the clock in
        the run id, which steps back when the host's clock does. Runs from before the
        sequence existed come last, in id order."""
        found = []
        for run_id in self.fs.listdir(self.fs.path("runs")):
            if not is_run_id(run_id):
                continue
            try:
                manifest = json.loads(self.fs.read(self.fs.path("runs", run_id, "manifest.json")) or b"null")
            except ValueError:
                continue
            if isinstance(manifest, dict) and manifest.get("chip") == chip:
                sequence = manifest.get("sequence")
                found.append(((sequence if isinstance(sequence, int) else 0), run_id, manifest))
        for _, run_id, manifest in sorted(found, key=lambda item: item[:2], reverse=True):
            yield run_id, manifest

    def manifest_path(self, run_id: str) -> str:
        return self.fs.path("runs", check_run_id(run_id), "manifest.json")


class Run:
    """One run's table writers, manifest and resume state."""

    def __init__(self, store: RunStore, chip: str, run_id: str) -> None:
        self.store = store
        self.chip = chip
        self.id = run_id
        self.step = "setup"
        self.directory = store.fs.path("runs", run_id)  # where its manifest and checkpoints live
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
        data = store.fs.read(store.manifest_path(run_id))
        if data is None:
            raise UsageError(f"no run {run_id!r} in {str(store.root)!r}")
        try:
            manifest = json.loads(data)
        except ValueError as err:
            raise UsageError(f"run {run_id!r}: manifest cannot be read: {err}") from None
        run = cls(store, manifest["chip"], run_id)
        run.manifest = manifest
        return run

    def clear_stale_temporaries(self) -> None:
        """Remove what a killed writer of this run left half-written (hidden ``.tmp`` files):
        the caller holds the chip's lock, so no live writer of this run is mid-file."""
        if self.fs.remote:
            return
        for directory in [self.directory, *(self.partition(table) for table in self._tables())]:
            for name in self.fs.listdir(directory):
                if name.startswith(".") and name.endswith(".tmp"):
                    self.fs.delete(f"{directory}/{name}")

    @property
    def fs(self) -> StoreFS:
        return self.store.fs

    def partition(self, table: str) -> str:
        return self.fs.path(table, f"chip={self.chip}", f"run={self.id}")

    def table(self, name: str):  # -> TableWriter, imported lazily with pyarrow
        key = (name, self.step)
        if key not in self._writers:
            from labctl.store.schemas import SCHEMAS, layout
            from labctl.store.writer import TableWriter

            self._writers[key] = TableWriter(self.partition(name), SCHEMAS[name], prefix=f"{self.step}-", fs=self.fs,
                                             layout=layout(name))
        return self._writers[key]

    def _tables(self) -> list[str]:
        return [name for name in self.fs.listdir(self.fs.base) if name != "runs" and not name.startswith(".")]

    def begin_step(self, step: str, keep: Callable[[str], bool] = lambda name: False) -> None:
        """Start (or restart) a step: parts an interrupted attempt of it left are removed,
        except those ``keep`` names (journalled units a resumed step continues from)."""
        self.step = step
        for table in self._tables():
            partition = self.partition(table)
            for name in self.fs.listdir(partition):
                if name.startswith(f"part-{step}-") and name.endswith(".parquet") and not keep(name):
                    self.fs.delete(f"{partition}/{name}")

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
        """The last word of a run. The reserve goes first: a process killed between the
        two then leaves a run that is still resumable, never a completed one with a
        ``.reserve`` left behind (and the reserve's room is what the manifest needs)."""
        self.flush()
        self.manifest.update(fields)
        self.manifest["status"] = status
        self.manifest["ended_utc"] = utc_now()
        self.manifest["tables"] = self.table_totals()
        self.release_reserve()
        self.write_manifest()

    def fail(self, status: str, error: str) -> bool:
        """Record a run that cannot go on, whatever state the disk is in.

        Measurements still buffered are written if the disk takes them; the space held
        in reserve is given up first, so a full disk still has room for the manifest
        that says ``failed``. Returns whether the manifest could be written (a
        read-only directory cannot take even that); never raises ``OSError``.
        """
        try:
            self.release_reserve()
        except OSError:
            pass  # a read-only directory: nothing can be written below either
        try:
            self.flush()
        except OSError as err:
            error += f" (measurements not yet flushed were lost: {getattr(err, 'strerror', None) or err})"
        self.manifest.update(error=error, status=status, ended_utc=utc_now())
        try:
            self.manifest["tables"] = self.table_totals()
        except OSError:
            pass
        try:
            self.write_manifest()
        except OSError:
            return False
        return True

    # ---- space held back for the last word --------------------------------------------

    RESERVE_BYTES = 256 * 1024

    def hold_reserve(self) -> None:
        """Set aside a little disk (local stores) that only ``fail`` gives back: a run that
        fills the disk can then still mark its manifest failed."""
        if not self.fs.remote:
            self.fs.write_atomic(f"{self.directory}/.reserve", bytes(self.RESERVE_BYTES))

    def release_reserve(self) -> None:
        if not self.fs.remote:
            self.fs.delete(f"{self.directory}/.reserve")

    def table_totals(self) -> dict[str, dict[str, int]]:
        """Rows and parts of this run in every table, as stored (a resumed run included)."""
        import pyarrow.parquet as pq

        totals: dict[str, dict[str, int]] = {}
        for table in sorted(self._tables()):
            partition = self.partition(table)
            parts = [n for n in self.fs.listdir(partition) if n.startswith("part-") and n.endswith(".parquet")]
            if parts:
                rows = 0
                for name in parts:
                    with self.fs.fs.open_input_file(f"{partition}/{name}") as source:
                        rows += pq.read_metadata(source).num_rows
                totals[table] = {"rows": rows, "parts": len(parts)}
        return totals

    def write_manifest(self) -> None:
        self.write_json("manifest.json", self.manifest)

    def write_json(self, name: str, value: Any) -> None:
        """Atomically: a crash leaves the old file or the new one, never half of either."""
        text = json.dumps(value, indent=2, default=_json_default) + "\n"
        self.fs.write_atomic(f"{self.directory}/{name}", text.encode("utf-8"))

    def write_bytes(self, name: str, data: bytes) -> None:
        self.fs.write_atomic(f"{self.directory}/{name}", data)

    def read_bytes(self, name: str) -> bytes | None:
        return self.fs.read(f"{self.directory}/{name}")

    def read_json(self, name: str) -> Any:
        data = self.read_bytes(name)
        return json.loads(data) if data is not None else None


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
