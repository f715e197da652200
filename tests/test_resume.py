"""Kill a drift run (SIGKILL, in a subprocess) at several points and resume it: every read once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import served_twin
from labctl.cli import app

READS, TEMPERATURES = 10, (300, 330)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resume")
    with served_twin(workdir, "128x128", "chipR") as config:
        yield workdir, config


def drift_reads_done(data: Path) -> int:
    journals = list((data / "runs").glob("*/drift.json")) if (data / "runs").exists() else []
    if not journals:
        return -1
    try:
        journal = json.loads(journals[0].read_text())
    except ValueError:
        return -1
    return sum(len(segment["times_s"]) for segment in journal["segments"])


def start(args: list[str], workdir: Path, crash_at: str | None = None) -> subprocess.Popen:
    """labctl in a subprocess; ``crash_at`` names a crash point where it SIGKILLs itself
    (``labctl.store.crashpoints``): a kill at an exact read, with no race against a poller."""
    env = {k: v for k, v in os.environ.items() if k not in ("LABCTL_CONFIG", "LABCTL_CRASH_AT")}
    if crash_at is not None:
        env["LABCTL_CRASH_AT"] = crash_at
    return subprocess.Popen([sys.executable, "-m", "labctl", *args], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def steps_done(data: Path) -> list[str]:
    manifests = list((data / "runs").glob("*/manifest.json")) if (data / "runs").exists() else []
    try:
        return json.loads(manifests[0].read_text())["steps_done"] if manifests else []
    except (OSError, ValueError, KeyError):
        return []  # mid-write, or its staging folder renamed to the run's name since the glob: poll again


def kill_when_step_done(process: subprocess.Popen, data: Path, step: str) -> None:
    deadline = time.time() + 120
    while step not in steps_done(data) and process.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_killed_drift_run_resumes_with_every_read_exactly_once(served):
    workdir, config = served
    data = workdir / "data"
    common = ["--config", str(config), "--data", str(data), "-q"]
    drift = ["drift", "chipR", "--duration", "2h", "--reads", str(READS),
             "--temperatures", ",".join(map(str, TEMPERATURES)), *common]
    kill_when_step_done(start(drift, workdir), data, "readout")  # during write-verify
    (run_dir,) = (data / "runs").iterdir()
    run_id = run_dir.name
    assert "write_verify" not in steps_done(data)
    for crash_at in ("drift-read-0-1", "drift-read-1-2"):  # the 2nd read of the first temperature, 3rd of the second
        killed = start(["resume", run_id, *common], workdir, crash_at=crash_at)
        killed.communicate(timeout=300)
        assert killed.returncode == -signal.SIGKILL, crash_at
    done = start(["drift", "chipR", "--resume", "--json", *common[:-1]], workdir)
    out, err = done.communicate(timeout=300)
    assert done.returncode in (0, 1), err
    summary = json.loads(out)
    assert summary["run_id"] == run_id
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and len(manifest["resumed_utc"]) == 3

    reads = pd.read_parquet(data / "reads", columns=["phase", "iteration", "row", "col"])
    drift = reads[reads["phase"].str.startswith("drift")]
    per_read = drift.groupby(["phase", "iteration"]).size()
    assert len(per_read) == READS * len(TEMPERATURES)  # none lost
    assert (per_read == 128 * 128).all()  # none twice
    assert not drift.duplicated().any()
    # each step's rows are those of one attempt only: write-verify cells once per cell
    cells = pd.read_parquet(data / "cells")
    assert len(cells) == 128 * 128
    fitted = summary["steps"]["drift"]
    assert 0.03 < fitted["nu_median"] < 0.1 and fitted["activation_ev"] is not None


def test_resume_refuses_a_completed_run_and_an_in_process_twin(tmp_path):
    runner = CliRunner()
    done = runner.invoke(app, ["calibrate", "--size", "8x8", "-q", "--json", "--data", str(tmp_path)])
    run_id = json.loads(done.stdout)["run_id"]
    result = runner.invoke(app, ["resume", run_id, "--data", str(tmp_path)])
    assert result.exit_code == 2 and "already completed" in result.stderr
    manifest = tmp_path / "runs" / run_id / "manifest.json"
    content = json.loads(manifest.read_text())
    content["status"] = "aborted"
    manifest.write_text(json.dumps(content))
    result = runner.invoke(app, ["resume", run_id, "--data", str(tmp_path)])
    assert result.exit_code == 2 and "twin inside its own process" in result.stderr
    result = runner.invoke(app, ["resume", "20990101T000000Z-000000", "--data", str(tmp_path)])
    assert result.exit_code == 2 and "no run" in result.stderr
