"""Reading runs back: runs list/show, open_store, export-model, compare."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import labctl
from labctl.analysis import ks_two_sample
from labctl.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    data = tmp_path_factory.mktemp("store")
    loose = data / "loose.toml"
    loose.write_text('name = "loose"\nsteps = ["readout", "write_verify", "mvm"]\n'
                     '[write_verify]\ntolerance_us = 2.0\nband_us = 1.5\n[acceptance]\nmax_error_sigma_us = 5\n')
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
    shown = json.loads(runner.invoke(app, ["runs", "show", ids[0], "--data", str(data)]).stdout)
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
    assert len(model["programming_error"]) == 8 and all(0 < p["sigma_us"] < 0.5 for p in model["programming_error"])
    assert 0 < model["stuck_rate"] < 0.02 and model["read_noise"] and model["mvm"]["worst_fs"] < 0.01
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
