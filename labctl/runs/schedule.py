"""Scheduled runs: a cron entry or a systemd user timer that runs a labctl command.

Every entry is tagged with an id (``labctl:<id>`` in the crontab, ``labctl-<id>`` as a
unit name) so ``schedule list`` and ``schedule remove`` find exactly labctl's own.
A scheduled run logs to ``$XDG_STATE_HOME/labctl/logs/<id>.log`` and writes a run to
the store like any other. A one-shot cron entry removes itself after it has run.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from labctl.errors import LabctlError, UsageError
from labctl.names import check_chip_name

TAG = "# labctl:"
KINDS = ("calibrate", "drift", "maintain")


@dataclass(frozen=True)
class Entry:
    id: str
    via: str
    when: str
    command: str


def parse_at(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not match or not (0 <= int(match[1]) <= 23 and 0 <= int(match[2]) <= 59):
        raise UsageError(f"--at {text!r}: expected HH:MM, for example 22:00")
    return int(match[1]), int(match[2])


def state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "labctl"


def systemd_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "systemd" / "user"


def choose_via(via: str) -> str:
    """The scheduler to use, checked to be usable here: what a dry run says is what the
    real one does (``auto``: a systemd user session, else crontab)."""
    if via == "auto":
        if _systemd_user_session():
            return "systemd"
        if shutil.which("crontab"):
            return "cron"
        raise LabctlError("no scheduler found: neither a systemd user session (systemctl --user) nor crontab "
                          "is available on this host")
    if via == "cron" and not shutil.which("crontab"):
        raise LabctlError("--via cron: crontab is not installed on this host (or not on PATH)")
    if via == "systemd" and not _systemd_user_session():
        raise LabctlError("--via systemd: no systemd user session here ('systemctl --user show-environment' "
                          "fails); log in with a user session or enable lingering (loginctl enable-linger)")
    return via


def _systemd_user_session() -> bool:
    return bool(shutil.which("systemctl")) and subprocess.run(
        ["systemctl", "--user", "show-environment"], capture_output=True).returncode == 0


def scheduled_options(kind: str, chip: str, extra: str) -> list[str]:
    """The options of a scheduled run as words, once its kind and chip name are known safe."""
    if kind not in KINDS:
        raise UsageError(f"cannot schedule {kind!r}: choose one of {', '.join(KINDS)}")
    check_chip_name(chip)
    try:
        return shlex.split(extra)
    except ValueError as err:
        raise UsageError(f"--args {extra!r}: {err}") from None


def labctl_command(kind: str, chip: str, extra: str, entry_id: str) -> str:
    """The shell command a schedule runs: one line, every word quoted for ``sh``."""
    extra_args = scheduled_options(kind, chip, extra)
    log = state_dir() / "logs" / f"{entry_id}.log"
    argv = [sys.executable, "-m", "labctl", kind, chip, "--quiet", *extra_args]
    for what, text in (("--args", extra), ("the working directory", os.getcwd()), ("the log path", str(log)),
                       ("the Python interpreter's path", sys.executable)):
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise UsageError(f"{what} {text!r} holds a control character: a scheduler entry is one line")
    return (f"cd {shlex.quote(os.getcwd())} && mkdir -p {shlex.quote(str(log.parent))} && "
            f"{shlex.join(argv)} >> {shlex.quote(str(log))} 2>&1")


def next_time(hour: int, minute: int, now: datetime | None = None) -> datetime:
    now = now or datetime.now()
    when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return when if when > now else when + timedelta(days=1)


def cron_escape(command: str) -> str:
    """crontab(5): an unescaped ``%`` ends the command (the rest becomes its stdin), and
    cron takes ``\\%`` for a literal one, before the shell sees the line."""
    return command.replace("%", "\\%")


def cron_line(entry_id: str, hour: int, minute: int, daily: bool, command: str) -> str:
    if daily:
        return f"{minute} {hour} * * * {cron_escape(command)} {TAG}{entry_id}"
    when = next_time(hour, minute)
    remove = shlex.join([sys.executable, "-m", "labctl", "schedule", "remove", entry_id, "--via", "cron"])
    return f"{minute} {hour} {when.day} {when.month} * {cron_escape(f'{command}; {remove}')} {TAG}{entry_id}"


def systemd_quote(argument: str) -> str:
    """One argument of ``ExecStart=`` as systemd.service(5) parses it: a double-quoted word
    (``\\`` and ``\"`` escaped), ``%%`` for a literal ``%`` (else a specifier) and ``$$``
    for a literal ``$`` (else an environment variable)."""
    escaped = argument.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def systemd_units(entry_id: str, hour: int, minute: int, daily: bool, command: str) -> dict[str, str]:
    calendar = f"*-*-* {hour:02d}:{minute:02d}:00" if daily else next_time(hour, minute).strftime("%Y-%m-%d %H:%M:00")
    service = (f"[Unit]\nDescription=labctl scheduled run {entry_id}\n\n[Service]\nType=oneshot\n"
               f"ExecStart=/bin/sh -c {systemd_quote(command)}\n")
    timer = (f"[Unit]\nDescription=labctl schedule {entry_id}\n\n[Timer]\nOnCalendar={calendar}\nPersistent=true\n\n"
             "[Install]\nWantedBy=timers.target\n")
    return {f"labctl-{entry_id}.service": service, f"labctl-{entry_id}.timer": timer}


def verify_units(units: dict[str, str]) -> None:
    """``systemd-analyze verify`` where it is installed: a unit systemd would reject is
    refused now, not found broken at 22:00. (System mode: it needs no running manager,
    and parses a unit exactly as the user manager does.)"""
    import tempfile

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    with tempfile.TemporaryDirectory() as directory:
        for name, body in units.items():
            Path(directory, name).write_text(body)
        done = subprocess.run([analyze, "verify", *(str(Path(directory, name)) for name in units)],
                              capture_output=True, text=True)
    problems = [line.replace(f"{directory}/", "") for line in (done.stderr + done.stdout).splitlines()
                if directory in line]
    if done.returncode != 0 and problems:  # otherwise it could not run here, which says nothing of the unit
        raise UsageError(f"systemd rejects the unit: {problems[0].strip()}")


def _crontab() -> list[str]:
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return done.stdout.splitlines() if done.returncode == 0 else []  # no crontab yet: empty


def _write_crontab(lines: list[str]) -> None:
    done = subprocess.run(["crontab", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True)
    if done.returncode != 0:
        raise LabctlError(f"crontab refused the new table: {done.stderr.strip() or done.returncode}")


def _systemctl(*args: str) -> None:
    done = subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise LabctlError(f"systemctl --user {' '.join(args)} failed: {done.stderr.strip()}")


def add(kind: str, chip: str, at: str, daily: bool, via: str, extra: str, dry_run: bool) -> tuple[Entry, str]:
    """Install (or, dry, describe) a schedule; returns the entry and what was (or would be) installed."""
    hour, minute = parse_at(at)
    entry_id = secrets.token_hex(3)
    command = labctl_command(kind, chip, extra, entry_id)
    via = choose_via(via)
    when = f"{'daily at' if daily else 'once at'} {hour:02d}:{minute:02d}"
    if via == "cron":
        line = cron_line(entry_id, hour, minute, daily, command)
        if not dry_run:
            _write_crontab([*_crontab(), line])
        return Entry(entry_id, via, when, command), line
    units = systemd_units(entry_id, hour, minute, daily, command)
    verify_units(units)
    text = "\n".join(f"# {name}\n{body}" for name, body in units.items())
    if not dry_run:
        directory = systemd_dir()
        directory.mkdir(parents=True, exist_ok=True)
        for name, body in units.items():
            (directory / name).write_text(body)
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", f"labctl-{entry_id}.timer")
    return Entry(entry_id, via, when, command), text


def entries(via: str) -> list[Entry]:
    found = []
    if via in ("auto", "cron") and shutil.which("crontab"):
        for line in _crontab():
            if TAG in line:
                body, entry_id = line.rsplit(TAG, 1)
                fields = body.split(None, 5)
                when = f"cron {' '.join(fields[:5])}" if len(fields) > 5 else "cron"
                found.append(Entry(entry_id.strip(), "cron", when, fields[5].strip() if len(fields) > 5 else body))
    if via in ("auto", "systemd"):
        for timer in sorted(systemd_dir().glob("labctl-*.timer")):
            entry_id = timer.stem.removeprefix("labctl-")
            calendar = re.search(r"OnCalendar=(.*)", timer.read_text())
            service = timer.with_suffix(".service")
            command = re.search(r"ExecStart=(.*)", service.read_text()) if service.exists() else None
            found.append(Entry(entry_id, "systemd", f"systemd {calendar[1] if calendar else '?'}",
                               command[1] if command else "?"))
    return found


def remove(entry_id: str, via: str) -> Entry:
    for entry in entries(via):
        if entry.id == entry_id:
            if entry.via == "cron":
                _write_crontab([line for line in _crontab() if not line.rstrip().endswith(f"{TAG}{entry_id}")])
            else:
                try:
                    _systemctl("disable", "--now", f"labctl-{entry_id}.timer")
                except LabctlError:
                    pass  # already stopped or no user session: the files go regardless
                for suffix in (".timer", ".service"):
                    (systemd_dir() / f"labctl-{entry_id}{suffix}").unlink(missing_ok=True)
            return entry
    raise UsageError(f"no labctl schedule with id {entry_id!r} (see 'labctl schedule list')")
