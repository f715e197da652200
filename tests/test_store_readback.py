"""Reading runs back: runs list/show, open_store, export-model, compare."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import labctl
from labctl.analysis.statistics import ks_two_sample
from labctl.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    data = tmp_path_factory.mktemp("store")
    loose = data / "loose.toml"
    loose.write_text('name = "loose"\nsteps = ["readout", "write_verify", "mvm"]\n'
                     '[write_verify]\ntolerance_us = 5.0\nband_us = 4.0\n[acceptance]\nmax_error_sigma_us = 5\n')
    ids = []
    for extra in ([], ["--fresh", "--seed", "1"], ["--fresh", "--protocol", str(loose)]):
        result = runner.invoke(app, ["calibrate", "--size", "64x64", "-q", "--json", "--data", str(data), *extra])
        assert result.exit_code in (0, 1), result.output
        ids.append(json.loads(result.stdout)["run_id"])
    return data, ids


def test_runs_list_and_show(store):
    data, ids = store
    listed = runner.invoke(app, ["runs", "list", "--data", str(data)])
    assert listed.exit_code == 0 and all(run in listed.stdout for run in ids)
    assert runner.invoke(app, ["runs", "list", "--data", str(data), "--chip", "nope"]).stdout.strip() == "no runs"
    shown = json.loads(runner.invoke(app, ["runs", "show", ids[0], "--data", str(data), "--json"]).stdout)
    assert shown["run_id"] == ids[0] and shown["status"] == "completed"
    bad = runner.invoke(app, ["runs", "list", "--data", str(data), "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.stderr


def test_open_store_returns_pandas_with_partition_columns(store):
    data, ids = store
    opened = labctl.open_store(data)
    assert list(opened.runs()["run_id"]) == sorted(ids)
    cells = opened.table("cells", run=ids[0])
    assert len(cells) == 64 * 64 and set(cells["run"].astype(str)) == {ids[0]}
    assert len(opened.table("cells")) == 3 * 64 * 64


def test_export_model(store, tmp_path):
    data, ids = store
    out = tmp_path / "model.json"
    result = runner.invoke(app, ["export-model", ids[0], "--format", "json", "--out", str(out), "--data", str(data)])
    assert result.exit_code == 0
    model = json.loads(out.read_text())
    assert model["format"] == "labctl-noise-model/1" and model["adc"]["bits"] == 12
    assert len(model["programming_error"]) == 8 and all(0 < p["sigma_us"] < 1.2 for p in model["programming_error"])
    assert 0 < model["stuck_rate"] < 0.02 and model["read_noise"] and model["mvm"]["worst_fs"] < 0.02
    assert runner.invoke(app, ["export-model", ids[0], "--format", "csv", "--data", str(data)]).exit_code == 2


def test_compare_passes_alike_runs_and_catches_a_regression(store):
    data, ids = store
    alike = runner.invoke(app, ["compare", ids[0], ids[1], "--data", str(data)])
    assert alike.exit_code == 0, alike.output
    worse = runner.invoke(app, ["compare", ids[0], ids[2], "--data", str(data)])
    assert worse.exit_code == 1 and "programming_error_us" in worse.stdout and "REGRESSED" in worse.stdout


def test_ks_two_sample():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
    assert ks_two_sample(a, b)[1] > 0.01
    d, p = ks_two_sample(a, rng.normal(0.3, 1, 2000))
    assert p < 1e-6 and 0.05 < d < 0.25


def test_duckdb_and_polars_read_the_tables_without_labctl(store):
    import duckdb
    import polars as pl

    data, ids = store
    count = duckdb.sql(f"select count(*) from read_parquet('{data}/cells/**/*.parquet', hive_partitioning=true) "
                       f"where run = '{ids[0]}'").fetchall()[0][0]
    assert count == 64 * 64
    frame = pl.scan_parquet(f"{data}/mvm/**/*.parquet", hive_partitioning=True).filter(pl.col("held_out")).collect()
    assert frame.height == 3 * 32 * 64 and {"chip", "run", "expected_ua"} <= set(frame.columns)
    assert len(labctl.open_store(data).duckdb("cells").fetchall()) == 3 * 64 * 64


def test_report_writes_valid_images_and_html(store, tmp_path):
    import matplotlib.image as mpimg

    data, ids = store
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", ids[0], "--out", str(out), "--data", str(data)])
    assert result.exit_code == 0, result.output
    images = sorted(out.glob("*.png"))
    assert {p.name for p in images} >= {"conductance_map.png", "error_histogram.png", "pulses_per_cell.png",
                                        "mvm_error.png"}
    for image in images:
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and mpimg.imread(image).ndim == 3
    page = (out / "index.html").read_text()
    assert page.startswith("<!doctype html>") and ids[0] in page and page.count("<img ") == len(images)
    from html.parser import HTMLParser

    HTMLParser().feed(page)  # parses


def test_compare_flags_a_different_preset(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text('[chips.rram0]\ntwin = { preset = "rram", size = "64x64" }\n')
    ids = []
    for chip in ("chip0", "rram0"):
        result = runner.invoke(app, ["calibrate", chip, "--config", str(config), "-q", "--json",
                                     "--data", str(tmp_path / "d")] + (["--size", "64x64"] if chip == "chip0" else []))
        ids.append(json.loads(result.stdout)["run_id"])
    compared = runner.invoke(app, ["compare", ids[0], ids[1], "--data", str(tmp_path / "d")])
    assert compared.exit_code == 1 and "REGRESSED" in compared.stdout
