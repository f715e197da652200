"""`labctl schedule`: dry runs, and a real crontab round trip in a temporary HOME."""

from __future__ import annotations

import os
import stat

import pytest
from typer.testing import CliRunner

from labctl.cli import app

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A temporary HOME with a `crontab` that keeps its table in $HOME/crontab.txt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "crontab"
    fake.write_text(
        "#!/bin/sh\n"
        'table="$HOME/crontab.txt"\n'
        'if [ "$1" = "-l" ]; then [ -f "$table" ] || { echo "no crontab for user" >&2; exit 1; }; cat "$table"; '
        'elif [ "$1" = "-" ]; then cat > "$table"; else exit 2; fi\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / ".state"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def test_dry_run_prints_a_cron_entry_and_installs_nothing(home):
    result = runner.invoke(app, ["schedule", "add", "drift", "chip0", "--at", "22:00", "--daily", "--via", "cron",
                                 "--args", "--duration 8h", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would install" in result.stdout
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("0 22 * * * ") and "labctl drift chip0 --quiet --duration 8h" in line
    assert "# labctl:" in line and ".state/labctl/logs/" in line
    assert not (home / "crontab.txt").exists()


def test_dry_run_prints_systemd_units(home):
    result = runner.invoke(app, ["schedule", "add", "calibrate", "chip0", "--at", "06:30", "--daily",
                                 "--via", "systemd", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "OnCalendar=*-*-* 06:30:00" in result.stdout and "ExecStart=/bin/sh -c" in result.stdout
    assert not (home / ".config" / "systemd").exists()


def test_cron_add_list_remove_round_trip(home):
    (home / "crontab.txt").write_text("15 3 * * * backup-everything\n")
    added = runner.invoke(app, ["schedule", "add", "drift", "chip0", "--at", "22:00", "--via", "cron"])
    assert added.exit_code == 0, added.output
    entry_id = added.stdout.split()[2]
    table = (home / "crontab.txt").read_text()
    assert "backup-everything" in table and f"# labctl:{entry_id}" in table
    assert f"schedule remove {entry_id} --via cron" in table  # a one-shot removes itself

    listed = runner.invoke(app, ["schedule", "list", "--via", "cron"])
    assert entry_id in listed.stdout and "drift chip0" in listed.stdout

    removed = runner.invoke(app, ["schedule", "remove", entry_id, "--via", "cron"])
    assert removed.exit_code == 0
    assert (home / "crontab.txt").read_text().strip() == "15 3 * * * backup-everything"
    assert "no labctl schedules" in runner.invoke(app, ["schedule", "list", "--via", "cron"]).stdout


@pytest.mark.parametrize("args, message", [
    (["schedule", "add", "drift", "chip0", "--at", "25:00", "--dry-run"], "--at '25:00'"),
    (["schedule", "add", "dance", "chip0", "--at", "22:00", "--dry-run", "--via", "cron"], "cannot schedule 'dance'"),
    (["schedule", "add", "drift", "chip0", "--at", "22:00", "--via", "fax"], "--via 'fax'"),
    (["schedule", "remove", "nope", "--via", "cron"], "no labctl schedule with id 'nope'"),
])
def test_bad_schedule_input(home, args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.stderr
