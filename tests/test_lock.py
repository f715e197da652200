"""One run per chip: a second is refused with who holds it; a dead holder's lock is taken over."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from labctl.rigs.lock import ChipBusy, chip_lock, lock_dir


def test_a_second_holder_is_refused_with_who_holds_it():
    with chip_lock("chipX", "labctl calibrate"):
        with pytest.raises(ChipBusy) as caught:
            with chip_lock("chipX"):
                pass
    message = str(caught.value)
    assert f"pid {os.getpid()}" in message and "labctl calibrate" in message
    with chip_lock("chipX"):  # released afterwards
        pass


def test_other_chips_are_independent():
    with chip_lock("chipA"), chip_lock("chipB"):
        pass


def test_a_lock_left_by_a_killed_process_is_taken_over():
    code = ("import time\nfrom labctl.rigs.lock import chip_lock\n"
            "with chip_lock('chipK', 'doomed'):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                               env={**os.environ})
    assert process.stdout.readline().strip() == "locked"
    with pytest.raises(ChipBusy, match="doomed"):
        with chip_lock("chipK"):
            pass
    process.kill()
    process.wait()
    time.sleep(0.1)
    with chip_lock("chipK") as holder:
        assert "doomed" in holder["took_over"]  # the dead holder's note, replaced by ours
    assert not any(p.read_text() for p in lock_dir().glob("*.lock"))  # no holder record left


def test_calibrate_on_a_busy_chip_is_refused_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from labctl.cli import app

    with chip_lock("chip0", "labctl drift"):
        result = CliRunner().invoke(app, ["calibrate", "--size", "8x8", "-q", "--data", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("labctl: error: chip0 is in use: pid")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()
