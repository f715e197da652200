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
    first = runner.invoke(app, ["calibrate", "--size", "32x32", "-q", "--json", "--data", s3_uri])
    assert first.exit_code == 0, first.output  # a record of its own: the test stands alone (pytest -n)
    result = runner.invoke(app, ["calibrate", "--size", "32x32", "-q", "--json", "--data", s3_uri])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["readout"].startswith("record of run")


def test_an_unreachable_bucket_is_a_usage_error(s3_uri):
    missing = s3_uri.replace("s3://labdata/", "s3://no-such-bucket/")
    result = runner.invoke(app, ["calibrate", "--size", "8x8", "-q", "--data", missing])
    assert result.exit_code == 2 and "not writable" in result.stderr


SECRET = "s3cr3tVALUE"


def test_credentials_in_the_uri_are_never_shown_or_stored(s3_uri, tmp_path):
    import subprocess
    import sys

    uri = s3_uri.replace("s3://labdata/lab1", f"s3://AKIAEXAMPLE:{SECRET}@labdata/creds")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-m", "labctl", "calibrate", "--size", "8x8", "--json", "--data", uri],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    assert SECRET not in done.stdout + done.stderr and "AKIAEXAMPLE" not in done.stdout + done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    manifest = labctl.open_store(uri).run_file(run_id, "manifest.json").decode()
    assert SECRET not in manifest and "AKIAEXAMPLE" not in manifest
    assert "***" in manifest  # the command line is kept, with its credentials hidden

    missing = uri.replace("labdata/creds", "no-such-bucket/creds")
    failed = subprocess.run([sys.executable, "-m", "labctl", "runs", "list", "--data", missing],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert failed.returncode == 2 and SECRET not in failed.stderr and "***" in failed.stderr, failed.stderr


@pytest.mark.parametrize("text", [f"s3://AKIAEXAMPLE:{SECRET}@bucket/p", f"gs://bucket/p?access_key=AKIAEXAMPLE&secret_key={SECRET}",
                                  f"error at 'abfs://acct:{SECRET}@c/p?sas_token={SECRET}': refused"])
def test_redact_hides_keys_in_every_form(text):
    from labctl.redact import redact

    shown = redact(text)
    assert SECRET not in shown and "AKIAEXAMPLE" not in shown and "***" in shown


def test_a_campaign_stores_its_runs_in_one_bucket_and_the_fleet_summary_reads_them(s3_uri, tmp_path):
    pytest.importorskip("distributed")
    from labctl.campaigns.fleet import fleet_summary
    from labctl.campaigns.runner import run_campaign

    config = tmp_path / "lab.toml"
    config.write_text('[chips.twinA]\ntwin = { size = "16x16", seed = 1 }\n'
                      '[chips.twinB]\ntwin = { size = "16x16", seed = 2 }\n')
    campaign = tmp_path / "campaign.toml"
    campaign.write_text('name = "bucket"\nchips = ["twinA", "twinB"]\n[[stage]]\nname = "drift"\nprotocol = "drift"\n'
                        'drift = { duration_s = 600, reads = 4, temperatures_k = [300] }\n')
    results = run_campaign(campaign, data=s3_uri, config=config)
    assert [(r["task"], r["status"]) for r in results] == [("twinA/drift", "completed"), ("twinB/drift", "completed")]
    fleet = fleet_summary(s3_uri).set_index("chip")
    assert {"twinA", "twinB"} <= set(fleet.index)
    for result in results:  # the bucket's drift table, aggregated by DuckDB, against each run's own figure
        assert fleet.loc[result["chip"], "nu_median"] == pytest.approx(result["summary"]["nu_median"], rel=0.05)


def test_a_campaign_through_a_scheduler_and_workers_stores_into_the_bucket(s3_uri, tmp_path):
    """The Dask path with the shared store on object storage: workers on loopback write there."""
    pytest.importorskip("distributed")
    from test_campaign import by_task, rig_hosts, start_scheduler, start_worker, wait_for_workers
    from test_campaign import labctl as run_labctl

    with rig_hosts(tmp_path) as ((host_a, host_b, campaign), processes):
        scheduler, address = start_scheduler(tmp_path)
        processes += [scheduler, start_worker(tmp_path, address, host_a, "hostA"),
                      start_worker(tmp_path, address, host_b, "hostB")]
        wait_for_workers(address, {"hostA", "hostB"})
        run = run_labctl(["campaign", "run", str(campaign), "--scheduler", address, "--data", s3_uri, "--json", "-q"],
                         tmp_path)
        processes.append(run)
        out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    results = by_task(json.loads(out))
    store = labctl.open_store(s3_uri)
    runs = store.runs()
    for result in results.values():
        assert result["status"] == "completed" and result["run_id"] in set(runs["run_id"])
    assert {"chipA", "chipB"} <= set(store.table("drift", columns=["nu"])["chip"].astype(str))
