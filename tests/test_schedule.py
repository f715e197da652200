"""`labctl schedule`: dry runs, and a real crontab round trip in a temporary HOME."""

from __future__ import annotations

import os
import shutil
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


def fake_systemctl(home, session: bool) -> None:
    """A `systemctl` whose user session answers (or not, as on a host with no login session)."""
    fake = home / "bin" / "systemctl"
    fake.write_text(f"#!/bin/sh\nexit {0 if session else 1}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)


def test_dry_run_prints_systemd_units(home):
    fake_systemctl(home, session=True)
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


@pytest.mark.parametrize("dry_run", [["--dry-run"], []])
@pytest.mark.parametrize("via, present, message", [
    ("cron", [], "--via cron: crontab is not installed"),
    ("systemd", ["systemctl-without-session"], "--via systemd: no systemd user session"),
    ("auto", ["systemctl-without-session"], "no scheduler found"),
])
def test_a_dry_run_checks_what_the_real_run_needs(home, monkeypatch, dry_run, via, present, message):
    """No crontab, no user session: the dry run fails exactly as the real one would, in one line."""
    empty = home / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    if present:
        fake_systemctl(home, session=False)
        (home / "bin" / "systemctl").rename(empty / "systemctl")
    result = runner.invoke(app, ["schedule", "add", "drift", "chip0", "--at", "22:00", "--via", via, *dry_run])
    assert result.exit_code == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (home / "crontab.txt").exists() and not (home / ".config" / "systemd").exists()


@pytest.mark.parametrize("args, message", [
    (["schedule", "add", "drift", "chip0", "--at", "25:00", "--dry-run"], "--at '25:00'"),
    (["schedule", "add", "dance", "chip0", "--at", "22:00", "--dry-run", "--via", "cron"], "cannot schedule 'dance'"),
    (["schedule", "add", "drift", "chip0", "--at", "22:00", "--via", "fax"], "--via 'fax'"),
    (["schedule", "remove", "nope", "--via", "cron"], "no labctl schedule with id 'nope'"),
])
def test_bad_schedule_input(home, args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.stderr


# ---- what cron and systemd make of the entries: crontab(5) and systemd.service(5) ----------


def cron_command(line: str) -> tuple[str, str | None]:
    """What cron runs for a crontab line, per crontab(5): the sixth field on; an unescaped
    ``%`` ends the command (the rest is its stdin) and ``\\%`` is a literal ``%``."""
    command = line.split(None, 5)[5]
    out, i = [], 0
    while i < len(command):
        if command.startswith("\\%", i):
            out.append("%")
            i += 2
        elif command[i] == "%":
            return "".join(out), command[i + 1 :]
        else:
            out.append(command[i])
            i += 1
    return "".join(out), None


def systemd_exec_words(value: str) -> list[str]:
    """``ExecStart=`` split into words as systemd.service(5) does: quotes, C escapes,
    ``%%`` for ``%`` (any other ``%x`` is a specifier) and ``$$`` for ``$``."""
    words, word, i, quote, started = [], [], 0, None, False
    while i < len(value):
        c = value[i]
        if c in "%$":  # a specifier or a variable unless doubled
            assert value[i + 1] == c, f"unescaped {c}{value[i + 1]} in {value!r}"
            word.append(c)
            i += 2
            started = True
            continue
        if quote:
            if c == "\\":
                word.append(value[i + 1])
                i += 2
                continue
            if c == quote:
                quote = None
            else:
                word.append(c)
        elif c in "\"'":
            quote, started = c, True
        elif c.isspace():
            if started:
                words.append("".join(word))
            word, started = [], False
        else:
            assert c != "\\", f"an escape outside quotes in {value!r}"
            word.append(c)
            started = True
        i += 1
    assert quote is None, f"unterminated quote in {value!r}"
    if started:
        words.append("".join(word))
    return words


HOSTILE_CWD = "lab 100% $HOME %h %3A 'q' \"dq\" \\back"


@pytest.mark.parametrize("daily", [True, False])
def test_cron_line_runs_exactly_the_command_whatever_the_directory_holds(home, monkeypatch, daily):
    from labctl.runs import schedule

    workdir = home / HOSTILE_CWD
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    command = schedule.labctl_command("drift", "chip0", "--data 's3://b/p?endpoint_override=h%3A9000'", "abc123")
    line = schedule.cron_line("abc123", 22, 0, daily, command)
    assert "\n" not in line and line.endswith("# labctl:abc123")
    ran, stdin = cron_command(line.rsplit(" # labctl:", 1)[0])
    assert stdin is None  # no % left for cron to cut the command at
    assert ran == command if daily else ran.startswith(command + "; ")
    import shlex

    words = shlex.split(ran)
    assert words[1] == str(workdir) and "s3://b/p?endpoint_override=h%3A9000" in words


def test_systemd_exec_start_runs_exactly_the_command_whatever_the_directory_holds(home, monkeypatch):
    from labctl.runs import schedule

    workdir = home / HOSTILE_CWD
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    command = schedule.labctl_command("drift", "chip0", "--data 's3://b/p?endpoint_override=h%3A9000'", "abc123")
    service = schedule.systemd_units("abc123", 22, 0, True, command)["labctl-abc123.service"]
    (exec_start,) = [line.removeprefix("ExecStart=") for line in service.splitlines() if line.startswith("ExecStart=")]
    assert systemd_exec_words(exec_start) == ["/bin/sh", "-c", command]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_accepts_the_units_and_rejects_an_unescaped_specifier(home, monkeypatch):
    from labctl.runs import schedule
    from labctl.errors import UsageError

    workdir = home / HOSTILE_CWD
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    command = schedule.labctl_command("drift", "chip0", "--duration 8h", "abc123")
    schedule.verify_units(schedule.systemd_units("abc123", 22, 0, False, command))
    broken = {"labctl-x.service": "[Service]\nType=oneshot\nExecStart=/bin/sh -c \"echo %3A\"\n"}
    with pytest.raises(UsageError, match="systemd rejects the unit"):
        schedule.verify_units(broken)


@pytest.mark.parametrize("args, message", [
    (["drift", "chip0\n* * * * * touch pwned #"], "chip name"),
    (["drift", "chip0", "--args", "--data 'd\n* * * * * touch pwned'"], "control character"),
    (["drift", "nochip"], "unknown chip 'nochip'"),
    (["drift", "chip0", "--args", "--duration forever"], "--duration 'forever'"),
    (["drift", "chip0", "--args", "--temperatures 300,5000"], "--temperatures"),
    (["drift", "chip0", "--args", "--no-such-option"], "No such option"),
    (["drift", "chip0", "--args", "--protocol missing.toml"], "missing.toml"),
    (["calibrate", "chip0", "--args", "--targets missing.npy"], "missing.npy"),
    (["calibrate", "chip0", "--args", "--size 8x"], "--size '8x'"),
    (["drift", "chip0", "--args", "--resume"], "--resume"),
])
def test_schedule_add_checks_the_command_line_now(home, args, message):
    result = runner.invoke(app, ["schedule", "add", *args, "--at", "22:00", "--via", "cron"])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (home / "crontab.txt").exists()


def test_a_newline_in_the_working_directory_is_refused(home, monkeypatch):
    workdir = home / "lab\n* * * * * touch pwned #"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    result = runner.invoke(app, ["schedule", "add", "drift", "chip0", "--at", "22:00", "--via", "cron"])
    assert result.exit_code == 2 and "working directory" in result.stderr, result.output
    assert not (home / "crontab.txt").exists()
