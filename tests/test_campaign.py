"""Campaigns on Dask distributed: a scheduler and two rig-host workers on loopback, each owning
a served twin chip; one worker dies mid-drift and comes back; the campaign completes with
every read stored exactly once and both chips' runs in one store. The local path (no
scheduler) gives the same runs."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("distributed")

from labctl_sims.server import RigServer, TwinRig  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "reliability"))
from harness import lab_toml, labctl  # noqa: E402

CAMPAIGN = """name = "night"
chips = ["chipA", "chipB"]

[[stage]]
name = "calibrate"
protocol = "calibrate"
fresh = true

[[stage]]
name = "drift"
protocol = "drift"
after = ["calibrate"]
drift = { duration_s = 3600, reads = 6, temperatures_k = [300, 330] }
"""
READS, TEMPERATURES, CELLS = 6, 2, 32 * 32


def serve_chips():
    return [RigServer(TwinRig.build("pcm", seed=seed, rows=32, cols=32), pty=False) for seed in (1, 2)]


def write_files(tmp_path: Path, servers) -> tuple[Path, Path, Path]:
    (tmp_path / "hostA.toml").write_text(lab_toml(servers[0], "chipA"))
    (tmp_path / "hostB.toml").write_text(lab_toml(servers[1], "chipB"))
    campaign = tmp_path / "campaign.toml"
    campaign.write_text(CAMPAIGN)
    return tmp_path / "hostA.toml", tmp_path / "hostB.toml", campaign


def start_scheduler(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    file = tmp_path / "scheduler.json"
    process = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not file.exists() or not file.read_text().strip():
        assert time.monotonic() < deadline and process.poll() is None, "the scheduler did not start"
        time.sleep(0.1)
    return process, json.loads(file.read_text())["address"]


def start_worker(tmp_path: Path, address: str, config: Path, name: str, crash_at: str | None = None):
    env = {"LABCTL_CRASH_AT": crash_at} if crash_at else None
    return labctl(["worker", "--scheduler", address, "--config", str(config), "--name", name], tmp_path, env)


def wait_for_workers(address: str, names: set[str]) -> None:
    from distributed import Client

    with Client(address, timeout=30) as client:
        deadline = time.monotonic() + 60
        while {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()} < names:
            assert time.monotonic() < deadline, "the workers did not join"
            time.sleep(0.1)


def check_every_read_once(data: Path) -> None:
    """Per run, no (step, phase, iteration, row, col) twice (the crash suite's check); each drift
    run holds all its reads."""
    for run_dir in sorted(data.glob("reads/chip=*/run=*")):
        frames = []
        for path in run_dir.glob("part-*.parquet"):
            frame = pq.read_table(path).to_pandas()
            frame["step"] = path.name.removeprefix("part-").rsplit("-", 1)[0]  # as the crash suite keys them
            frames.append(frame)
        frame = pd.concat(frames)
        assert not frame.duplicated(["step", "phase", "iteration", "row", "col"]).any(), run_dir
        drift_parts = list(run_dir.glob("part-drift-read-*.parquet"))
        if drift_parts:
            assert len(drift_parts) == READS * TEMPERATURES
            drift = frame[frame["phase"].str.startswith("drift-")]
            assert len(drift) == READS * TEMPERATURES * CELLS


@contextlib.contextmanager
def rig_hosts(tmp_path: Path):
    """Two served twin chips and their hosts' files; every process the test starts (appended to
    the list yielded) is stopped, and the chips' servers closed, however the test ends."""
    servers = serve_chips()
    processes: list[subprocess.Popen] = []
    try:
        for server in servers:
            server.__enter__()
        yield write_files(tmp_path, servers), processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        for server in servers:
            server.__exit__(None, None, None)


def by_task(results: list[dict]) -> dict[str, dict]:
    return {result["task"]: result for result in results}


def test_a_worker_killed_mid_drift_comes_back_and_the_campaign_completes_with_every_read_once(tmp_path):
    with rig_hosts(tmp_path) as ((host_a, host_b, campaign), processes):
        scheduler, address = start_scheduler(tmp_path)
        processes.append(scheduler)
        # worker A kills itself (SIGKILL) at its chip's third read at 330 K: stored, not yet journalled
        worker_a = start_worker(tmp_path, address, host_a, "hostA", crash_at="drift-read-1-2")
        worker_b = start_worker(tmp_path, address, host_b, "hostB")
        processes += [worker_a, worker_b]
        wait_for_workers(address, {"hostA", "hostB"})
        data = tmp_path / "data"
        run = labctl(["campaign", "run", str(campaign), "--scheduler", address, "--data", str(data), "--json",
                      "--host-timeout", "120"], tmp_path)
        processes.append(run)
        worker_a.wait(timeout=300)
        assert worker_a.returncode == -9  # died mid-drift
        assert run.poll() is None  # the campaign waits for chipA's host
        processes.append(start_worker(tmp_path, address, host_a, "hostA"))  # the host is back
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        results = by_task(json.loads(out))
        assert {task: r["status"] for task, r in results.items()} == dict.fromkeys(
            ["chipA/calibrate", "chipB/calibrate", "chipA/drift", "chipB/drift"], "completed")
        assert results["chipA/drift"]["action"] == "resumed"  # from its journal, not run again
        assert results["chipB/drift"]["action"] == "started"
        manifests = [json.loads(p.read_text()) for p in (data / "runs").glob("*/manifest.json")]
        assert sorted(m["chip"] for m in manifests) == ["chipA", "chipA", "chipB", "chipB"]  # one store, no extra run
        assert all(m["status"] == "completed" for m in manifests)
        check_every_read_once(data)
        fleet = labctl(["fleet", "summary", "--data", str(data), "--json"], tmp_path)
        out, err = fleet.communicate(timeout=120)
        rows = {row["chip"]: row for row in json.loads(out)}
        assert set(rows) == {"chipA", "chipB"} and all(row["nu_median"] > 0 for row in rows.values()), err


def _campaign_runs(tmp_path: Path, scheduler: bool) -> dict[str, dict]:
    """The campaign on fresh twins (the same seeds), through a scheduler and workers or locally."""
    tmp_path.mkdir(parents=True)
    with rig_hosts(tmp_path) as ((host_a, host_b, campaign), processes):
        data = tmp_path / "data"
        if scheduler:
            process, address = start_scheduler(tmp_path)
            processes += [process, start_worker(tmp_path, address, host_a, "hostA"),
                          start_worker(tmp_path, address, host_b, "hostB")]
            wait_for_workers(address, {"hostA", "hostB"})
            where = ["--scheduler", address]
        else:
            both = tmp_path / "lab.toml"
            both.write_text(host_a.read_text() + host_b.read_text())
            where = ["--config", str(both)]
        run = labctl(["campaign", "run", str(campaign), *where, "--data", str(data), "--json", "-q"], tmp_path)
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        return by_task(json.loads(out))


def test_the_local_path_and_the_dask_path_give_the_same_runs(tmp_path):
    local = _campaign_runs(tmp_path / "local", scheduler=False)
    distributed = _campaign_runs(tmp_path / "dask", scheduler=True)
    assert list(local) == list(distributed) == ["chipA/calibrate", "chipB/calibrate", "chipA/drift", "chipB/drift"]
    for task in local:
        assert local[task]["status"] == distributed[task]["status"] == "completed"
        assert local[task]["summary"] == pytest.approx(distributed[task]["summary"]), task  # same figures, same twins


def test_a_chip_whose_host_never_comes_is_reported_and_the_rest_goes_on(tmp_path):
    with rig_hosts(tmp_path) as ((_, host_b, campaign), processes):
        scheduler, address = start_scheduler(tmp_path)
        processes += [scheduler, start_worker(tmp_path, address, host_b, "hostB")]  # chipA's host is down
        wait_for_workers(address, {"hostB"})
        run = labctl(["campaign", "run", str(campaign), "--scheduler", address, "--data", str(tmp_path / "data"),
                      "--json", "-q", "--host-timeout", "3"], tmp_path)
        out, err = run.communicate(timeout=300)
        assert run.returncode == 1, err
        results = by_task(json.loads(out))
        assert results["chipB/drift"]["status"] == "completed"
        assert results["chipA/calibrate"]["status"] == results["chipA/drift"]["status"] == "host gone"
        assert "no worker owned chipA for 3 s" in results["chipA/calibrate"]["error"]


@pytest.mark.parametrize("text, message", [
    ('name = "n"\nchips = ["a"]\n[[stage]]\nname = "x"\nprotocol = "drift"\nafter = ["y"]\n'
     '[[stage]]\nname = "y"\nprotocol = "drift"\nafter = ["x"]\n', "cycle: x -> y -> x"),
    ('name = "n"\nchips = ["a"]\n[[stage]]\nname = "x"\nprotocol = "drift"\nafter = ["z"]\n', "no stage 'z'"),
    ('name = "n"\nchips = ["a"]\n[[stage]]\nname = "x"\nprotocol = "drift"\nchips = ["b"]\n', "chip 'b' is not"),
    ('name = "n"\nchips = []\n[[stage]]\nname = "x"\nprotocol = "drift"\n', "chips"),
    ('name = "n"\nchips = ["a"]\n[[stage]]\nname = "x"\nprotocol = "drift"\ncolour = 1\n', "colour"),
])
def test_a_bad_campaign_file_is_one_line_at_exit_2(tmp_path, text, message):
    from typer.testing import CliRunner

    from labctl.cli import app

    path = tmp_path / "c.toml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["campaign", "run", str(path)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_tasks_follow_their_stages_order_per_chip(tmp_path):
    from labctl.campaigns.spec import load_campaign

    path = tmp_path / "c.toml"
    path.write_text('name = "n"\nchips = ["a", "b"]\n[[stage]]\nname = "drift"\nprotocol = "p.toml"\n'
                    'after = ["cal"]\nchips = ["b"]\n[[stage]]\nname = "cal"\nprotocol = "calibrate"\n')
    _, tasks = load_campaign(path)
    assert [t.id for t in tasks] == ["a/cal", "b/cal", "b/drift"]
    assert tasks[2].after == ("b/cal",) and tasks[2].resource == "chip:b"
    assert tasks[2].protocol_path == str((tmp_path / "p.toml").resolve()) and tasks[0].protocol_path == "calibrate"


def test_a_worker_for_a_chip_its_config_does_not_know_stops_before_joining(tmp_path):
    from typer.testing import CliRunner

    from labctl.cli import app

    config = tmp_path / "lab.toml"
    config.write_text('[chips.twinA]\ntwin = { size = "4x4" }\n')
    result = CliRunner().invoke(app, ["worker", "--scheduler", "tcp://127.0.0.1:1", "--config", str(config),
                                      "--chips", "twinA,nosuch"])
    assert result.exit_code == 2 and "nosuch" in result.output, result.output


def test_running_a_campaign_again_makes_new_runs_not_last_nights(tmp_path):
    """Each `campaign run` is its own submission: a finished run of an earlier one is not taken
    as tonight's (within one submission a task is never run twice; see the kill test)."""
    from labctl.campaigns.runner import run_campaign

    config = tmp_path / "lab.toml"
    config.write_text('[chips.twinA]\ntwin = { size = "16x16", seed = 1 }\n')
    campaign = tmp_path / "campaign.toml"
    campaign.write_text('name = "nightly"\nchips = ["twinA"]\n[[stage]]\nname = "calibrate"\nprotocol = "calibrate"\n')
    first, second = (run_campaign(campaign, data=str(tmp_path / "data"), config=config)[0] for _ in range(2))
    assert first["action"] == second["action"] == "started"
    assert first["run_id"] != second["run_id"] and first["submission"] != second["submission"]
    labels = [json.loads(p.read_text())["labels"] for p in (tmp_path / "data" / "runs").glob("*/manifest.json")]
    assert sorted(label["submission"] for label in labels) == sorted([first["submission"], second["submission"]])
