"""Store throughput: labctl's run store against raw pyarrow, CSV and the field's own loggers.

Every writer stores the same array reads (256x256 cells each, the ``reads`` table's rows:
board time, wall time, phase, iteration, array, row, column, code, conductance,
temperature) in the same run:

* **labctl end to end**: ``StoreRecorder.on_read`` as write-verify calls it (the batch built
  from the read's numpy arrays) into ``TableWriter``, flushed to Parquet parts;
* **raw pyarrow ParquetWriter** with its defaults (a dictionary tried on every column), the
  batches ready-made;
* **pandas CSV**, what labs use today;
* **QCoDeS** (when installed): a dataset with one array-valued parameter per read (the
  conductances only, stored as one opaque blob per read: its fastest path), and its default
  numeric rows (row, column and conductance per ``add_result``);
* **PyMeasure** (when installed): ``Results`` formatting each row as its CSV line, as its
  ``Recorder`` writes them.

Ratios are against the labctl figure. QCoDeS's numeric rows and PyMeasure's CSV are timed on
fewer rows (``--slow-rows``) and reported per row.

    python bench/store.py [--rows 2000000] [--slow-rows 20000] [--side 256]
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

from labctl.runs.recorder import StoreRecorder
from labctl.store.schemas import SCHEMAS, layout
from labctl.store.writer import TableWriter

SIDE = 256  # a 256x256 array read unless told


def reads(total: int, side: int = SIDE) -> list[tuple[np.ndarray, np.ndarray]]:
    """(codes, conductances) of ``total / side²`` array reads of side x side cells."""
    rng = np.random.default_rng(0)
    return [(rng.integers(0, 2048, (side, side)).astype(np.int16), rng.uniform(0, 25, (side, side)))
            for _ in range(max(1, total // (side * side)))]


def shape_of(data) -> tuple[int, int]:
    """The side of the reads and the cells in one."""
    side = data[0][1].shape[1]
    return side, data[0][1].size


class _OneTable:
    """The one table a recorder writes here, in place of a run."""

    def __init__(self, writer: TableWriter) -> None:
        self.writer = writer

    def table(self, name: str) -> TableWriter:
        return self.writer


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fast_writers(data, root: Path) -> dict[str, float]:
    schema = SCHEMAS["reads"]
    side, _ = shape_of(data)
    rows = np.arange(side)

    def labctl_end_to_end() -> None:
        writer = TableWriter(root / "labctl", schema, layout=layout("reads"))  # as a run's
        recorder = StoreRecorder(_OneTable(writer), array=0, t0_s=0.0, cols=side)
        for i, (codes, g) in enumerate(data):
            recorder.on_read("verify", i, rows, codes, g, float(i), 300.0)
        writer.flush()

    builder = StoreRecorder(_OneTable(TableWriter(root / "unused", schema)), array=0, t0_s=0.0, cols=side)
    ready = [pa.RecordBatch.from_pydict(builder.read_columns("verify", i, rows, c, g, float(i), 300.0), schema=schema)
             for i, (c, g) in enumerate(data)]

    def raw_pyarrow() -> None:
        with pq.ParquetWriter(root / "raw.parquet", schema, compression="zstd") as writer:
            for batch in ready:
                writer.write_batch(batch)

    def pandas_csv() -> None:
        for i, batch in enumerate(ready):
            batch.to_pandas().to_csv(root / "reads.csv", mode="a", header=i == 0, index=False)

    # best of three for the fast writers: one run of a fraction of a second is at the mercy of the machine
    return {"labctl end to end": min(timed(labctl_end_to_end) for _ in range(3)),
            "raw pyarrow ParquetWriter": min(timed(raw_pyarrow) for _ in range(3)),
            "pandas CSV": timed(pandas_csv)}


def qcodes_writers(data, root: Path, slow_rows: int) -> dict[str, tuple[float, int]] | str:
    """(seconds, rows) per QCoDeS path, or why it did not run."""
    try:
        import qcodes  # noqa: F401
        from qcodes.dataset import Measurement, initialise_or_create_database_at, load_or_create_experiment
        from qcodes.parameters import Parameter
        from qcodes.validators import Arrays
    except ImportError as err:
        return f"QCoDeS not installed ({err.name}): pip install qcodes"
    initialise_or_create_database_at(str(root / "qcodes.db"))
    experiment = load_or_create_experiment("store-bench", sample_name="twin")
    out: dict[str, tuple[float, int]] = {}
    side, cells = shape_of(data)

    g_array = Parameter("g_us", get_cmd=None, set_cmd=None, vals=Arrays(shape=(cells,)))
    measurement = Measurement(exp=experiment)
    measurement.register_parameter(g_array, paramtype="array")

    def array_parameter() -> None:
        with measurement.run() as saver:
            for _, g in data:
                saver.add_result((g_array, g.ravel()))

    # best of three, as labctl's own figure (each a new run in the same database)
    out["QCoDeS dataset, array parameter"] = (min(timed(array_parameter) for _ in range(3)), len(data) * cells)

    row, col, g_value = (Parameter(name, get_cmd=None, set_cmd=None) for name in ("row", "col", "g"))
    numeric = Measurement(exp=experiment)
    numeric.register_parameter(row)
    numeric.register_parameter(col)
    numeric.register_parameter(g_value, setpoints=(row, col))
    flat = data[0][1].ravel()[:slow_rows]

    def numeric_rows() -> None:
        with numeric.run() as saver:
            for k, value in enumerate(flat):
                saver.add_result((row, k // side), (col, k % side), (g_value, float(value)))

    out["QCoDeS dataset, numeric rows"] = (timed(numeric_rows), len(flat))
    return out


def pymeasure_writer(data, root: Path, slow_rows: int) -> dict[str, tuple[float, int]] | str:
    try:
        from pymeasure.experiment import Procedure, Results
    except ImportError as err:
        return f"PyMeasure not installed ({err.name}): pip install pymeasure"

    class ReadsProcedure(Procedure):
        DATA_COLUMNS = ["t_s", "phase", "iteration", "array", "row", "col", "code", "g_us", "temperature_k"]

        def execute(self) -> None:  # the bench feeds rows itself
            pass

    results = Results(ReadsProcedure(), str(root / "pymeasure.csv"))
    side, _ = shape_of(data)
    codes, g = data[0][0].ravel()[:slow_rows], data[0][1].ravel()[:slow_rows]

    def csv_results() -> None:
        with open(root / "pymeasure.csv", "a", encoding="utf-8") as handle:
            for k in range(len(g)):
                handle.write(results.format({"t_s": 0.0, "phase": "verify", "iteration": 0, "array": 0,
                                             "row": k // side, "col": k % side, "code": int(codes[k]),
                                             "g_us": float(g[k]), "temperature_k": 300.0}) + "\n")

    return {"PyMeasure Results CSV": (timed(csv_results), len(g))}


def figures(rows: int = 2_000_000, slow_rows: int = 20_000, side: int = SIDE
            ) -> tuple[dict[str, tuple[float, int]], list[str]]:
    """(seconds, rows) per writer, and a line for each of the field's loggers that is not installed."""
    data = reads(rows, side)
    total = len(data) * side * side
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results = {name: (seconds, total) for name, seconds in fast_writers(data, root).items()}
        notes = []
        for extra in (qcodes_writers(data, root, slow_rows), pymeasure_writer(data, root, slow_rows)):
            if isinstance(extra, str):
                notes.append(extra)
            else:
                results.update(extra)
    return results, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--slow-rows", type=int, default=20_000, help="rows for the row-at-a-time writers")
    parser.add_argument("--side", type=int, default=SIDE, help="reads of side x side cells")
    args = parser.parse_args()
    results, notes = figures(args.rows, args.slow_rows, args.side)
    total = results["labctl end to end"][1]
    ours = total / results["labctl end to end"][0]
    cells = args.side * args.side
    print(f"store throughput, {total:,} reads rows ({total // cells} array reads of {cells:,} cells)")
    print(f"{'writer':<34}{'rows':>11}{'s':>8}{'rows/s':>13}{'labctl is':>11}")
    for name, (seconds, rows) in results.items():
        rate = rows / seconds
        print(f"{name:<34}{rows:>11,}{seconds:>8.2f}{rate:>13,.0f}{ours / rate:>10.1f}x")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
