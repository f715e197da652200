"""Store throughput: rows/s of labctl's table writer against raw pyarrow and pandas CSV.

All three write the same `reads` rows (the store's widest, most frequent table) in
the same run; ratios are against raw pyarrow's ParquetWriter, whose speed is the
ceiling for Parquet, and against CSV, what labs use today.

    python bench/store.py [--rows 2000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from labctl.store.schemas import SCHEMAS
from labctl.store.writer import TableWriter

BATCH = 65_536  # one 256x256 array read


def batches(total: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for start in range(0, total, BATCH):
        n = min(BATCH, total - start)
        out.append({
            "t_s": np.full(n, start * 1e-3), "wall_time": np.full(n, np.datetime64("2026-11-23T22:00:00", "us")),
            "phase": ["verify"] * n, "iteration": np.full(n, start // BATCH, dtype=np.int32),
            "array": np.zeros(n, dtype=np.int16), "row": (np.arange(n) // 256).astype(np.int16),
            "col": (np.arange(n) % 256).astype(np.int16), "code": rng.integers(0, 2048, n).astype(np.int16),
            "g_us": rng.uniform(0, 25, n).astype(np.float32), "temperature_k": np.full(n, 300.0, dtype=np.float32),
        })
    return out


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def figures(rows: int = 2_000_000) -> dict[str, float]:
    """Seconds for each writer to store ``rows`` reads rows."""
    data = batches(rows)
    schema = SCHEMAS["reads"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def labctl_writer() -> None:
            writer = TableWriter(root / "labctl", schema)
            for columns in data:
                writer.append(columns)
            writer.flush()

        def raw_pyarrow() -> None:
            with pq.ParquetWriter(root / "raw.parquet", schema, compression="zstd") as writer:
                for columns in data:
                    writer.write_batch(pa.RecordBatch.from_pydict(columns, schema=schema))

        def pandas_csv() -> None:
            for i, columns in enumerate(data):
                pd.DataFrame(columns).to_csv(root / "reads.csv", mode="a", header=i == 0, index=False)

        # best of three for the fast writers: a single run of a fraction of a second is at the mercy of the machine
        return {"raw pyarrow ParquetWriter": min(timed(raw_pyarrow) for _ in range(3)),
                "labctl TableWriter": min(timed(labctl_writer) for _ in range(3)), "pandas CSV": timed(pandas_csv)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    results = figures(args.rows)
    raw, csv = results["raw pyarrow ParquetWriter"], results["pandas CSV"]
    print(f"store throughput, {args.rows:,} reads rows in batches of {BATCH:,}")
    print(f"{'writer':<28}{'s':>8}{'rows/s':>14}{'vs pyarrow':>12}{'vs CSV':>9}")
    for name, seconds in results.items():
        print(f"{name:<28}{seconds:>8.2f}{args.rows / seconds:>14,.0f}{raw / seconds:>12.2f}{csv / seconds:>9.1f}")


if __name__ == "__main__":
    main()
