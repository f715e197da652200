"""Input that declares or asks for far more than a run can hold: refused from its header
or from the protocol's estimate, before memory or disk is spent on it."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labctl_calibration.read_noise import ReadNoiseParams, measure_read_noise
from labctl_calibration.readout import Readout
from labctl.runs.budget import Budget, check_fits, estimate
from labctl.errors import UsageError
from labctl.runs.protocol import CalibrateProtocol

MEMORY_LIMIT = 1536 * 2**20  # address space of the labctl under test: a real run of 8x8 needs far less


def labctl_limited(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run([sys.executable, "-m", "labctl", *args], cwd=cwd, capture_output=True, text=True,
                          preexec_fn=limit, timeout=300)


def sparse_csv(path: Path) -> None:
    with path.open("wb") as handle:  # 2 GB of nothing, one newline at the end
        handle.seek(2 * 10**9)
        handle.write(b"\n")


def huge_npy(path: Path) -> None:
    with path.open("wb") as handle:  # a header declaring 30000x30000 float64, the data a hole
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (30000, 30000)})
        handle.seek(30000 * 30000 * 8 - 1, 1)
        handle.write(b"\0")


def tall_parquet(path: Path) -> None:
    zeros = pa.table({"c0": pa.array(np.zeros(2_000_000))})
    with pq.ParquetWriter(path, zeros.schema, compression="zstd") as writer:
        for _ in range(10):  # 20 M rows in a small file
            writer.write_table(zeros)


@pytest.mark.parametrize(("name", "make", "message"), [
    ("sparse.csv", sparse_csv, "longer than"),
    ("huge.npy", huge_npy, "declares a 30000x30000 matrix"),
    ("tall.parquet", tall_parquet, "declares a 20000000x1 matrix"),
])
def test_a_huge_targets_file_is_refused_before_it_is_read(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    done = labctl_limited(["calibrate", "--size", "8x8", "-q", "--targets", str(path), "--data", str(tmp_path / "d")],
                          tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "d").exists()


def test_a_drift_that_needs_more_memory_than_there_is_is_refused_before_it_starts(tmp_path):
    temperatures = ",".join(str(300 + k) for k in range(32))  # 32 segments of 10,000 reads, each kept for the fit
    done = labctl_limited(["drift", "--size", "1024x1024", "--reads", "10000", "--temperatures", temperatures, "-q",
                           "--data", str(tmp_path / "d")], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "of memory" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not list((tmp_path / "d").glob("runs/*/manifest.json"))


def test_the_estimate_counts_every_noise_read_and_disk_is_checked():
    greedy = CalibrateProtocol(name="x", read_noise=ReadNoiseParams(reads=4096))
    budget = estimate(greedy, 1024, 1024)
    assert budget.read_rows >= 4096 * 1024 * 1024
    assert budget.memory_bytes == estimate(CalibrateProtocol(name="x"), 1024, 1024).memory_bytes  # streamed, not kept
    with pytest.raises(UsageError, match="free"):
        check_fits(Budget(memory_bytes=0, disk_bytes=2**60, read_rows=2**57), "p.toml", "/")


def test_read_noise_streams_to_the_same_statistics_as_a_stack(board):
    seen = []

    class Keep:
        def on_read(self, phase, i, rows, codes, g, t_s, kelvin):
            seen.append(np.array(g, dtype=float))

    readout = Readout(lsb_ua=board.adc().lsb_ua, read_voltage=0.2)
    result = measure_read_noise(board, readout, ReadNoiseParams(reads=7), Keep())
    stack = np.stack(seen)
    assert np.allclose(result.mean_us, stack.mean(axis=0))
    assert np.allclose(result.sigma_us, stack.std(axis=0, ddof=1))
