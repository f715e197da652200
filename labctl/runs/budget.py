"""What a run will need, estimated before it starts, and refused if it cannot have it.

A protocol within every per-key bound can still ask for too much in total (4096 noise
reads of a 1024x1024 array are 4 G rows; a long multi-temperature drift keeps every
read in memory for its fit). The estimate is an upper bound from the protocol and the
array size: every step's reads at their largest count. It is compared with the memory
available now and the free space under the data directory, so such a run fails in one
line before it starts instead of hours in, on a full disk or out of memory.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import UsageError
from labctl.runs.protocol import CalibrateProtocol

READ_ROW_DISK_BYTES = 10  # one cell read in Parquet: measured 4 B compressed, noise compresses worse
PULSE_ROW_DISK_BYTES = 12
CELL_MEMORY_BYTES = 3000  # per cell, whatever the step: measured 2.6 kB at the peak of a 256x256 calibration
BASE_MEMORY_BYTES = 128 * 2**20  # the interpreter with numpy, pandas and pyarrow imported


@dataclass(frozen=True)
class Budget:
    memory_bytes: int
    disk_bytes: int
    read_rows: int


def estimate(protocol: CalibrateProtocol, rows: int, cols: int) -> Budget:
    cells = rows * cols
    steps = set(protocol.steps)
    full_reads = 0  # array reads stored, at most
    if "health" in steps:
        full_reads += 4
    if "readout" in steps:
        r = protocol.readout
        full_reads += protocol.write_verify.max_iterations + 1  # programming the reference rows
        read_rows = len(r.levels_us) * (2 * r.repeats + 2) * cols
    else:
        read_rows = 0
    if "read_noise" in steps:
        full_reads += protocol.read_noise.reads
    wv_iterations = protocol.write_verify.max_iterations + 1
    if "write_verify" in steps or "drift" in steps:
        full_reads += wv_iterations
    if "refine" in steps:  # each round re-verifies some cells: at most a whole write-verify
        full_reads += protocol.refine.rounds * wv_iterations
    if "mvm" in steps:
        full_reads += protocol.mvm.reference_reads
    if "maintain" in steps and protocol.maintain.refresh:  # per look: the refresh's averaged reads, its
        # write-verify's first and last full reads, and its sparse verifies (a few per cent of the cells)
        m = protocol.maintain
        full_reads += (m.ticks + 1) * (m.reads + 3 + protocol.write_verify.max_iterations // 10)
    kept = 0  # array reads held in memory at once
    if "drift" in steps:
        drift_reads = protocol.drift.reads * len(protocol.drift.temperatures_k)
        full_reads += drift_reads
        kept = drift_reads  # every read of every segment, for the fit
    read_rows += full_reads * cells
    passes = 1 + (1 if "readout" in steps else 0) + (protocol.refine.rounds if "refine" in steps else 0)
    pulses = cells * wv_iterations * passes
    return Budget(memory_bytes=BASE_MEMORY_BYTES + cells * (CELL_MEMORY_BYTES + 8 * kept),
                  disk_bytes=read_rows * READ_ROW_DISK_BYTES + pulses * PULSE_ROW_DISK_BYTES, read_rows=read_rows)


OVERRIDE = "LABCTL_BUDGET"  # "off": run anyway (the estimate is an upper bound; the user may know better)


def check_fits(budget: Budget, source: str, data_root: str | Path) -> None:
    """Refuse (exit 2) what will not fit; where a figure cannot be known, do not guess."""
    if os.environ.get(OVERRIDE, "").lower() == "off":
        return
    available = available_memory()
    if available is not None and budget.memory_bytes > available:
        raise UsageError(f"{source}: this run would need about {_size(budget.memory_bytes)} of memory and "
                         f"{_size(available)} is available: fewer drift reads or temperatures, or a smaller array "
                         f"({OVERRIDE}=off runs it anyway)")
    free = free_disk(data_root)
    if free is not None and budget.disk_bytes > free:
        raise UsageError(f"{source}: this run may write up to {_size(budget.disk_bytes)} "
                         f"({budget.read_rows:,} read rows) and {str(data_root)!r} has {_size(free)} free "
                         f"({OVERRIDE}=off runs it anyway)")


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def free_disk(data_root: str | Path) -> int | None:
    if "://" in str(data_root):
        return None  # object storage: no free space to ask for
    path = Path(data_root).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _size(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"
