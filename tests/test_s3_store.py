"""The store on object storage: a local S3-compatible server (moto) on loopback, started here."""

from __future__ import annotations

import json
import os

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

import labctl
from labctl.cli import app

runner = CliRunner()
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_uri():
    from moto.server import ThreadedMotoServer
    from pyarrow.fs import S3FileSystem

    saved = {key: os.environ.get(key) for key in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"{host}:{port}"
    S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1",
                 allow_bucket_creation=True).create_dir("labdata")
    yield f"s3://labdata/lab1?endpoint_override={endpoint}&scheme=http&region=us-east-1"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_a_run_round_trips_through_s3(s3_uri):
    result = runner.invoke(app, ["calibrate", "--size", "32x32", "-q", "--json", "--data", s3_uri])
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]

    store = labctl.open_store(s3_uri)
    assert list(store.runs()["run_id"]) == [run_id]
    cells = store.table("cells", run=run_id)
    assert len(cells) == 32 * 32 and set(cells["chip"].astype(str)) == {"chip0"}
    assert store.manifest(run_id)["status"] == "completed"
    assert json.loads(store.run_file(run_id, "calibration.json"))["chip"] == "chip0"

    # another tool, no labctl: pyarrow straight from the bucket
    reads = ds.dataset(store.fs.path("reads"), filesystem=store.fs.fs, format="parquet", partitioning="hive")
    assert reads.count_rows() > 0 and "run" in reads.schema.names

    listed = runner.invoke(app, ["runs", "list", "--data", s3_uri])
    assert run_id in listed.stdout
    model = runner.invoke(app, ["export-model", run_id, "--data", s3_uri])
    assert json.loads(model.stdout)["format"] == "labctl-noise-model/1"


def test_the_record_is_reused_from_s3(s3_uri):
    result = runner.invoke(app, ["calibrate", "--size", "32x32", "-q", "--json", "--data", s3_uri])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["readout"].startswith("record of run")


def test_an_unreachable_bucket_is_a_usage_error(s3_uri):
    missing = s3_uri.replace("s3://labdata/", "s3://no-such-bucket/")
    result = runner.invoke(app, ["calibrate", "--size", "8x8", "-q", "--data", missing])
    assert result.exit_code == 2 and "not writable" in result.stderr
