"""SIGKILL ``labctl calibrate`` and ``labctl drift`` at random (seeded) moments, resume, repeat.

After every kill the store is checked as a reader would find it: every visible Parquet
file is whole, every manifest parses, and every part a finished step (or a journalled
drift read) had flushed before an earlier kill is still there, byte for byte. When a
run finally completes, its tables hold exactly the rows an uninterrupted run of the
same protocol holds (per step and phase where the count is fixed by the protocol, and
consistent with the run's own iteration and pulse counts where it is not), with no row
twice and no temporary file left behind.

The twin is served from this process, so the chip outlives every killed labctl.
"""

from __future__ import annotations

import collections
import hashlib
import random
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from harness import CAMPAIGN, lab_toml, labctl, manifests

from labctl import open_store
from labctl_sims.server import RigServer, TwinRig

CHIP = "chipK"
KILLS = 20 * CAMPAIGN  # per protocol
KILLS_PER_RUN = 5
PROTOCOLS = {
    "calibrate": ["calibrate", CHIP, "--fresh"],
    "drift": ["drift", CHIP, "--duration", "1h", "--reads", "8", "--temperatures", "300,330"],
}
FIXED_TABLES = ("cells", "readout", "mvm", "drift")  # row counts the protocol alone decides


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("crash")
    links = workdir / "dev"
    links.mkdir()
    with RigServer(TwinRig.build("pcm", seed=3, rows=32, cols=32), pty_links=str(links)) as server:
        config = workdir / "lab.toml"
        config.write_text(lab_toml(server, CHIP, board="pty"))  # the board on a serial line, the rest TCP
        yield workdir, config


def parts(data: Path) -> dict[Path, str]:
    """Every visible part: its content hash (a half-written one fails to read)."""
    found = {}
    for path in data.glob("*/chip=*/run=*/part-*.parquet"):
        pq.read_table(path)  # raises on a partial or corrupt file
        found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def durable_parts(data: Path) -> dict[Path, str]:
    """Parts a resume must never lose: those of finished steps and journalled drift reads."""
    runs = manifests(data)  # also: every manifest parses
    keep = {}
    for path, digest in parts(data).items():
        run = runs.get(path.parent.name.removeprefix("run="), {})
        step = path.name.removeprefix("part-").rsplit("-", 1)[0]
        if step in run.get("steps_done", []) or path.name.startswith("part-drift-read-"):
            keep[path] = digest
    return keep


def kill_later(process: subprocess.Popen, delay_s: float) -> bool:
    """SIGKILL after ``delay_s`` unless it ended first; whether it was killed."""
    deadline = time.monotonic() + delay_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return True


def finish(process: subprocess.Popen) -> int:
    _, err = process.communicate(timeout=300)
    assert process.returncode in (0, 1), err
    return process.returncode


def step_rows(data: Path, table: str) -> pd.DataFrame:
    """A table's rows with the step whose part holds them."""
    frames = []
    for path in sorted(data.glob(f"{table}/chip=*/run=*/part-*.parquet")):
        frame = pq.read_table(path).to_pandas()
        frame["step"] = path.name.removeprefix("part-").rsplit("-", 1)[0]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def fixed_counts(data: Path) -> dict[str, int]:
    """Row counts that do not depend on how many write-verify iterations a run took."""
    counts: dict[str, int] = {}
    for table in FIXED_TABLES:
        counts[table] = sum(pq.read_metadata(p).num_rows for p in data.glob(f"{table}/chip=*/run=*/part-*.parquet"))
    reads = step_rows(data, "reads")
    for (step, phase), rows in reads.groupby(["step", "phase"]).size().items():
        if phase not in ("verify", "recheck"):  # both depend on the iterations a run took
            counts[f"reads {step}/{phase}"] = int(rows)
    return counts


def check_completed(data: Path, expected: dict[str, int]) -> None:
    (manifest,) = manifests(data).values()
    assert manifest["status"] == "completed"
    leftovers = [p for p in data.rglob("*") if any(part.startswith(".") for part in p.relative_to(data).parts)]
    assert leftovers == [], leftovers  # no temporary part, no reserve, no staged run
    assert fixed_counts(data) == expected

    reads, pulses = step_rows(data, "reads"), step_rows(data, "pulses")
    assert not reads.duplicated(["step", "phase", "iteration", "row", "col"]).any()
    assert not pulses.duplicated(["step", "t_s", "iteration", "row", "col"]).any()
    cells = pd.read_parquet(data / "cells")
    write_verify = manifest["steps"]["write_verify"]
    assert int(cells["pulses"].sum()) == (pulses["step"] == "write_verify").sum()
    verify = reads[(reads["step"] == "write_verify") & (reads["phase"] == "verify")]
    assert verify["iteration"].nunique() == write_verify["iterations"]  # one verify read per iteration
    assert (verify.groupby("iteration").size() % (cells["col"].max() + 1) == 0).all()  # of whole rows
    pulsed = pulses[pulses["step"] == "write_verify"]
    read_rows = verify.groupby("iteration")["row"].agg(set)
    assert all(set(rows) <= read_rows[it] for it, rows in pulsed.groupby("iteration")["row"])  # every pulse verified
    assert {t: v["rows"] for t, v in manifest["tables"].items()} == {
        t: sum(pq.read_metadata(p).num_rows for p in data.glob(f"{t}/chip=*/run=*/part-*.parquet"))
        for t in manifest["tables"]}


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_sigkill_at_random_points_loses_nothing_and_resume_completes(rig, protocol):
    workdir, config = rig
    rng = random.Random(f"crash-{protocol}")
    common = ["--config", str(config), "-q"]

    baseline = workdir / f"{protocol}-baseline"
    began = time.monotonic()
    assert finish(labctl([*PROTOCOLS[protocol], *common, "--data", str(baseline)], workdir)) in (0, 1)
    duration = time.monotonic() - began
    expected = fixed_counts(baseline)
    check_completed(baseline, expected)

    kills, runs, outcomes = 0, 0, collections.Counter()
    while kills < KILLS:
        data = workdir / f"{protocol}-{runs}"
        runs += 1
        durable: dict[Path, str] = {}
        for attempt in range(KILLS_PER_RUN + 1):
            visible = manifests(data) if data.exists() else {}
            if any(run["status"] == "completed" for run in visible.values()):
                break  # the last kill came after the run had completed, as it exited
            args = ["resume", next(iter(visible))] if visible else PROTOCOLS[protocol]
            process = labctl([*args, *common, "--data", str(data)], workdir)
            if attempt == KILLS_PER_RUN or kills == KILLS or not kill_later(process, rng.uniform(0.2, duration)):
                # completed (checked below), passed or not: the chip outlives every run, so a later run
                # meets a chip with more history than the baseline's and may land either side of an
                # acceptance limit (0 passed, 1 failed acceptance)
                assert finish(process) in (0, 1)
                break
            kills += 1
            outcomes["before the run was visible" if not manifests(data) else "during the run"] += 1
            if manifests(data):  # a killed run is not shown as running
                assert "running" not in set(open_store(data).runs()["status"])
            now = durable_parts(data)
            lost = {p for p, digest in durable.items() if now.get(p) != digest}
            assert not lost, f"kill {kills}: flushed parts lost or changed: {sorted(map(str, lost))}"
            durable = now
        else:
            pytest.fail("the run did not complete")
        check_completed(data, expected)
        assert all(durable_parts(data).get(p) == digest for p, digest in durable.items())
    print(f"{protocol}: {kills} kills over {runs} runs ({dict(outcomes)}), uninterrupted run {duration:.1f} s")


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_a_kill_during_the_data_directory_probe_leaves_nothing_behind(rig, protocol):
    """The probe's window is too short for random kill times to find: kill there by name."""
    workdir, config = rig
    data = workdir / f"{protocol}-probe"
    common = ["--config", str(config), "-q", "--data", str(data)]
    killed = labctl([*PROTOCOLS[protocol], *common], workdir, env_extra={"LABCTL_CRASH_AT": "probe"})
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert [p.name for p in data.iterdir() if p.name.startswith(".")]  # the probe it left
    assert manifests(data) == {}  # and no run
    assert finish(labctl([*PROTOCOLS[protocol], *common], workdir)) in (0, 1)
    baseline = workdir / f"{protocol}-baseline"
    check_completed(data, fixed_counts(baseline) if baseline.exists() else fixed_counts(data))
