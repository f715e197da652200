"""Several labctl processes at once, and a data directory that fills up or turns read-only.

Concurrency: two processes on one chip, one is refused (and says who holds it); two
chips at once, both complete; a lock a SIGKILLed run left is taken over.

Disk: the data directory lives on a 3 MB tmpfs, or is remounted read-only, in the middle
of a run (in a private mount namespace: ``unshare -rm``, no root needed). The run fails
with one line, the parts written before stay intact and readable, the manifest says
``failed`` when the disk can still take it, and no temporary file is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from harness import lab_toml, labctl, manifests

from labctl.store.query import observed_status
from labctl_sims.server import RigServer, TwinRig


@pytest.fixture(scope="module")
def two_rigs(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("concurrency")
    with RigServer(TwinRig.build(seed=1, rows=32, cols=32), pty=False) as first, \
            RigServer(TwinRig.build(seed=2, rows=32, cols=32), pty=False) as second:
        config = workdir / "lab.toml"
        config.write_text(lab_toml(first, "chipA") + "\n" + lab_toml(second, "chipB"))
        yield workdir, config


def wait_for_run(data: Path, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = manifests(data) if (data / "runs").exists() else {}
        if runs:
            return next(iter(runs.values()))
        time.sleep(0.01)
    raise AssertionError("no run appeared")


def test_a_second_process_on_the_same_chip_is_refused(two_rigs):
    workdir, config = two_rigs
    common = ["--config", str(config), "-q"]
    first = labctl(["drift", "chipA", "--duration", "2h", "--reads", "20", *common, "--data", str(workdir / "d1")],
                   workdir)
    wait_for_run(workdir / "d1")
    second = labctl(["calibrate", "chipA", *common, "--data", str(workdir / "d2")], workdir)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1
    assert err.strip().startswith("labctl: error: chipA is in use: pid") and "labctl drift" in err
    assert len(err.strip().splitlines()) == 1
    assert not (workdir / "d2" / "runs").exists() or not manifests(workdir / "d2")
    _, err = first.communicate(timeout=300)
    assert first.returncode in (0, 1) and not err.strip(), err  # undisturbed: it completes (1: a limit missed)
    (run,) = manifests(workdir / "d1").values()
    assert run["status"] == "completed"


def test_two_chips_at_once_both_complete_and_a_killed_holder_is_taken_over(two_rigs):
    workdir, config = two_rigs
    common = ["--config", str(config), "-q", "--json"]
    doomed = labctl(["drift", "chipB", "--duration", "2h", "--reads", "20", *common, "--data", str(workdir / "dk")],
                    workdir)
    wait_for_run(workdir / "dk")
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    both = labctl(["calibrate", "chipA", "chipB", "--fresh", *common, "--data", str(workdir / "both")], workdir)
    _, err = both.communicate(timeout=300)
    assert both.returncode == 0, err
    runs = manifests(workdir / "both")
    assert sorted(run["chip"] for run in runs.values()) == ["chipA", "chipB"]
    assert all(run["status"] == "completed" for run in runs.values())
    taken_over = [run for run in runs.values() if run["chip"] == "chipB"][0]["lock"]["took_over_stale"]
    assert taken_over and "labctl drift" in json.dumps(taken_over)


# ---- disk --------------------------------------------------------------------------


def can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1M tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_mount_namespace = pytest.mark.skipif(not can_unshare(), reason="no unprivileged mount namespaces here")

IN_NAMESPACE = textwrap.dedent("""
    set -u
    mount -t tmpfs -o size={size} tmpfs "$DATA"
    {python} -m labctl {args} --data "$DATA" -q > "$OUT/stdout" 2> "$OUT/stderr" &
    pid=$!
    {trigger}
    wait $pid; echo $? > "$OUT/rc"
    cp -a "$DATA" "$OUT/data"
""")

WHEN_WRITE_VERIFY_STARTS = """
    while ! ls "$DATA"/readout/chip=*/run=*/part-readout-*.parquet >/dev/null 2>&1; do sleep 0.005; done
    mount -o remount,ro "$DATA"
"""


def run_in_namespace(tmp_path: Path, config: Path, size: str, trigger: str = "",
                     budget: str = "off") -> tuple[int, str, Path]:
    """``budget`` off: the run starts whatever its estimate, so the disk fills mid-run."""
    data, out = tmp_path / "mnt", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    script = IN_NAMESPACE.format(size=size, python=sys.executable, trigger=trigger,
                                 args=f"calibrate chipA --fresh --config {config}")
    subprocess.run(["unshare", "-rm", "bash", "-c", script], env={**os.environ, "DATA": str(data), "OUT": str(out), "LABCTL_BUDGET": budget},
                   cwd=tmp_path, timeout=300, check=True)
    return int((out / "rc").read_text()), (out / "stderr").read_text(), out / "data"


def assert_intact(data: Path) -> list[Path]:
    parts = sorted(data.glob("*/chip=*/run=*/part-*.parquet"))
    for part in parts:
        pq.read_table(part)  # whole and readable
    leftovers = [p for p in data.rglob("*.tmp")]
    assert leftovers == [], leftovers
    return parts


@needs_mount_namespace
def test_a_disk_too_small_for_the_run_is_refused_before_it_starts(two_rigs, tmp_path):
    _, config = two_rigs
    code, err, data = run_in_namespace(tmp_path, config, "480k", budget="on")
    assert code == 2 and "free" in err and err.strip().count("\n") == 0, err
    assert manifests(data) == {} and not list(data.glob("*/chip=*"))


@needs_mount_namespace
def test_a_full_disk_fails_the_run_cleanly_and_keeps_what_was_written(two_rigs, tmp_path):
    _, config = two_rigs
    code, err, data = run_in_namespace(tmp_path, config, "480k")  # room for the first steps, not for all
    assert code == 1, err
    assert err.strip().count("\n") == 0 and "No space left on device" in err, err
    (manifest,) = manifests(data).values()
    assert manifest["status"] == "failed" and "No space left on device" in manifest["error"]
    parts = assert_intact(data)
    done = manifest["steps_done"]
    assert "health" in done and "write_verify" not in done
    for step in done:  # every finished step's measurements are there
        assert any(f"part-{step}-" in p.name for p in parts), step
    assert not (data / "runs" / manifest["run_id"] / ".reserve").exists()


@needs_mount_namespace
def test_a_data_directory_turned_read_only_mid_run_fails_cleanly(two_rigs, tmp_path):
    _, config = two_rigs
    code, err, data = run_in_namespace(tmp_path, config, "64m", WHEN_WRITE_VERIFY_STARTS)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Read-only file system" in lines[0] and "could not be marked failed" in lines[0]
    (manifest,) = manifests(data).values()
    assert manifest["status"] == "running"  # the disk took nothing more, not even the word "failed"
    assert observed_status(manifest) == "interrupted"  # but labctl runs list does not say "running"
    parts = assert_intact(data)
    assert any("part-readout-" in p.name for p in parts)


def test_a_data_directory_that_is_not_writable_is_refused_before_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    process = subprocess.run([sys.executable, "-m", "labctl", "calibrate", "--size", "4x4", "-q", "--data",
                              str(blocker / "data")], capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert process.stderr.count("\n") == 1 and "not writable" in process.stderr
