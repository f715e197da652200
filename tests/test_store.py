"""The run store's files, read back by tools that know nothing of labctl."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from labctl.errors import UsageError
from labctl.store import RunStore
from labctl.store.schemas import SCHEMAS
from labctl.store.writer import TableWriter


def cells_rows(n, offset=0):
    return {
        "array": np.zeros(n, np.int16),
        "row": np.arange(offset, offset + n, dtype=np.int16),
        "col": np.zeros(n, np.int16),
        "target_us": np.full(n, 5.0, np.float32),
        "achieved_us": np.full(n, 5.1, np.float32),
        "pulses": np.ones(n, np.int32),
        "converged": np.ones(n, bool),
        "stuck": np.zeros(n, bool),
        "aimed_us": np.full(n, 5.0, np.float32),
    }


def test_parts_are_written_whole_and_numbered(tmp_path):
    writer = TableWriter(tmp_path / "t", SCHEMAS["cells"], rows_per_part=10)
    writer.append(cells_rows(4))
    assert not (tmp_path / "t").exists()  # nothing flushed yet, nothing on disk
    writer.append(cells_rows(8, offset=4))  # crosses the part size: flushed
    writer.append(cells_rows(3, offset=12))
    writer.flush()
    files = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert files == ["part-00000.parquet", "part-00001.parquet"]
    table = pq.read_table(tmp_path / "t")
    assert table.num_rows == 15 and sorted(table["row"].to_pylist()) == list(range(15))
    assert writer.rows_written == 15


def test_files_use_the_fixed_schema_and_zstd(tmp_path):
    writer = TableWriter(tmp_path / "t", SCHEMAS["cells"])
    writer.append(cells_rows(5))
    writer.flush()
    meta = pq.ParquetFile(tmp_path / "t" / "part-00000.parquet")
    assert meta.schema_arrow == SCHEMAS["cells"]
    assert meta.metadata.row_group(0).column(0).compression == "ZSTD"


def test_reads_are_written_in_their_layout_and_read_back_with_the_fixed_schema(tmp_path):
    """The phase arrives as an Arrow dictionary, the temperature is split by byte stream, small
    integers are plain; every reader still sees the table's schema (phase a string)."""
    import duckdb
    import polars as pl

    from labctl.runs.recorder import StoreRecorder
    from labctl.store.schemas import layout

    class OneTable:
        def __init__(self, writer):
            self.writer = writer

        def table(self, name):
            return self.writer

    writer = TableWriter(tmp_path / "reads", SCHEMAS["reads"], layout=layout("reads"))
    recorder = StoreRecorder(OneTable(writer), array=0, t0_s=0.0, cols=8)
    for i, phase in enumerate(["verify", "recheck", "verify"]):
        recorder.on_read(phase, i, np.arange(4), np.full((4, 8), i, np.int16), np.full((4, 8), 1.5 * i), float(i), 300.0)
    writer.append({**recorder.read_columns("health", 9, np.arange(1), np.zeros((1, 8), np.int16),
                                           np.zeros((1, 8)), 9.0, 301.0), "phase": ["a", "b"] * 4})  # plain strings too
    writer.flush()
    (path,) = (tmp_path / "reads").iterdir()
    meta = pq.ParquetFile(path)
    assert meta.schema_arrow == SCHEMAS["reads"]
    columns = {meta.metadata.row_group(0).column(k).path_in_schema: meta.metadata.row_group(0).column(k).encodings
               for k in range(meta.metadata.num_columns)}
    assert "RLE_DICTIONARY" in columns["phase"] and "BYTE_STREAM_SPLIT" in columns["temperature_k"]
    assert "RLE_DICTIONARY" not in columns["row"] and "RLE_DICTIONARY" not in columns["g_us"]
    table = pq.read_table(path)
    assert table.schema == SCHEMAS["reads"]
    assert table["phase"].to_pylist() == ["verify"] * 32 + ["recheck"] * 32 + ["verify"] * 32 + ["a", "b"] * 4
    assert duckdb.sql(f"select count(*) from read_parquet('{path}') where phase = 'recheck'").fetchall()[0][0] == 32
    assert pl.read_parquet(path)["phase"].dtype == pl.String


def test_wrong_columns_are_refused_before_anything_is_written(tmp_path):
    writer = TableWriter(tmp_path / "t", SCHEMAS["cells"])
    rows = cells_rows(3)
    del rows["stuck"]
    with pytest.raises(KeyError):
        writer.append(rows)
    writer.flush()
    assert not (tmp_path / "t").exists()


def reads_rows(n, t_s=1.0):
    from labctl.runs.recorder import constant_text

    return {"t_s": np.full(n, t_s), "wall_time": np.full(n, np.datetime64("2026-12-07T21:00:00", "us")),
            "phase": constant_text("verify", n), "iteration": np.zeros(n, np.int32), "array": np.zeros(n, np.int16),
            "row": np.arange(n, dtype=np.int16), "col": np.zeros(n, np.int16), "code": np.full(n, 7, np.int16),
            "g_us": np.full(n, 2.5, np.float32), "temperature_k": np.full(n, 300.0, np.float32)}


def test_a_missing_value_in_a_required_column_is_refused_before_anything_is_written(tmp_path):
    from labctl.store.schemas import layout

    writer = TableWriter(tmp_path / "reads", SCHEMAS["reads"], layout=layout("reads"))
    rows = reads_rows(4)
    rows["wall_time"] = np.array(["2026-12-07T21:00", "NaT", "NaT", "2026-12-07T21:00"], dtype="datetime64[us]")
    with pytest.raises(ValueError, match=r"column 'wall_time' has 2 missing value\(s\)"):
        writer.append(rows)
    writer.flush()
    assert not (tmp_path / "reads").exists()


def test_reads_parts_with_optional_columns_read_back_beside_required_ones(tmp_path):
    """Reads written before their columns were required (each column optional) and after
    sit in one table: pyarrow's dataset, DuckDB and polars read both."""
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as ds
    import polars as pl

    from labctl.store.schemas import layout

    older = pa.schema([field.with_nullable(True) for field in SCHEMAS["reads"]])
    assert not any(field.nullable for field in SCHEMAS["reads"])
    directory = tmp_path / "reads"
    directory.mkdir()
    old_rows = {**reads_rows(8, t_s=0.5), "phase": ["verify"] * 8}
    pq.write_table(pa.Table.from_pydict(old_rows, schema=older), directory / "part-before-00000.parquet")
    writer = TableWriter(directory, SCHEMAS["reads"], layout=layout("reads"))
    writer.append(reads_rows(8, t_s=1.5))
    writer.flush()
    assert len(list(directory.iterdir())) == 2
    (new_part,) = [p for p in directory.iterdir() if "before" not in p.name]
    written = pq.ParquetFile(new_part).schema
    assert all(written.column(k).max_definition_level == 0 for k in range(len(written)))  # no levels to encode
    for order in (sorted, lambda paths: sorted(paths, reverse=True)):
        table = ds.dataset(order([str(p) for p in directory.iterdir()]), format="parquet").to_table()
        assert sorted(set(table["t_s"].to_pylist())) == [0.5, 1.5] and table.num_rows == 16
    assert duckdb.sql(f"select count(*), sum(t_s) from read_parquet('{directory}/*.parquet')").fetchall() == [(16, 16.0)]
    assert pl.read_parquet(f"{directory}/*.parquet")["phase"].to_list() == ["verify"] * 16


def test_a_run_is_hive_partitioned_and_has_a_manifest(tmp_path):
    store = RunStore(tmp_path)
    run = store.create_run("chipA", {"seed": 3})
    run.table("cells").append(cells_rows(6))
    run.step_done("write_verify", iterations=4)
    run.finish("completed", summary={"cells": 6})

    df = pd.read_parquet(tmp_path / "cells")
    assert len(df) == 6
    assert set(df["chip"].astype(str)) == {"chipA"}
    assert set(df["run"].astype(str)) == {run.id}

    manifest = json.loads((tmp_path / "runs" / run.id / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["seed"] == 3
    assert manifest["steps_done"] == ["write_verify"]
    assert manifest["tables"]["cells"] == {"rows": 6, "parts": 1}
    assert manifest["ended_utc"] >= manifest["started_utc"]
    assert not list(tmp_path.rglob(".*.tmp"))


def test_manifest_of_a_running_run_is_already_on_disk(tmp_path):
    run = RunStore(tmp_path).create_run("c", {})
    manifest = json.loads((tmp_path / "runs" / run.id / "manifest.json").read_text())
    assert manifest["status"] == "running"


def test_run_ids_sort_by_start_and_are_unique(tmp_path):
    store = RunStore(tmp_path)
    ids = [store.create_run("c", {}).id for _ in range(20)]
    assert len(set(ids)) == 20


def test_unwritable_root_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UsageError, match="not writable"):
        RunStore(blocker / "data").check_writable()


def test_a_failed_background_write_is_raised_by_flush_and_nothing_is_claimed(tmp_path, monkeypatch):
    """Full parts are written on a background thread; a write that fails there (a full disk)
    must reach the caller at ``flush``, before any journal or manifest records the rows."""
    writer = TableWriter(tmp_path / "t", SCHEMAS["cells"], rows_per_part=10)

    def full_disk(path, table, **options):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.fs, "write_table_atomic", full_disk)
    writer.append(cells_rows(12))  # a full part: handed to the writing thread
    with pytest.raises(OSError, match="No space left"):
        writer.flush()
    assert writer.rows_written == 0 and not list((tmp_path / "t").glob("part-*"))


def test_parts_written_in_the_background_are_all_on_disk_after_flush(tmp_path):
    writer = TableWriter(tmp_path / "t", SCHEMAS["cells"], rows_per_part=1000)
    for k in range(20):
        writer.append(cells_rows(1000, offset=0))
    writer.flush()
    assert writer.parts_written == 20 and writer.rows_written == 20_000
    assert pq.read_table(tmp_path / "t").num_rows == 20_000


def test_a_killed_writer_leaves_no_partial_part_and_loses_no_flushed_one(tmp_path):
    import signal
    import subprocess
    import sys

    code = f"""
import numpy as np
from labctl.store.schemas import SCHEMAS
from labctl.store.writer import TableWriter
writer = TableWriter(__import__("pathlib").Path({str(tmp_path / "t")!r}), SCHEMAS["cells"], rows_per_part=50_000)
n = 50_000
columns = {{"array": np.zeros(n, np.int16), "row": np.zeros(n, np.int16), "col": np.zeros(n, np.int16),
           "target_us": np.ones(n, np.float32), "achieved_us": np.ones(n, np.float32),
           "pulses": np.ones(n, np.int32), "converged": np.ones(n, bool), "stuck": np.zeros(n, bool),
           "aimed_us": np.ones(n, np.float32)}}
while True:
    writer.append(columns)  # a full part each time: written, fsynced, renamed
    print(writer.parts_written, flush=True)
"""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    flushed = 0
    while flushed < 5:
        flushed = int(process.stdout.readline())
    process.send_signal(signal.SIGKILL)
    process.wait()
    visible = sorted((tmp_path / "t").glob("part-*.parquet"))
    assert len(visible) >= flushed  # every part reported flushed is there
    table = pq.read_table(tmp_path / "t")  # and every visible part is whole
    assert table.num_rows == 50_000 * len(visible)
    TableWriter(tmp_path / "t", SCHEMAS["cells"])  # a new writer clears what a killed one left half-done
    assert not list((tmp_path / "t").glob(".*.tmp"))
