"""One run per chip at a time.

The lock is an ``flock`` on ``<lock dir>/<chip>.lock``: the kernel releases it when the
holder exits, however it dies, so a lock left by a dead process is simply taken over.
The file also says who holds it (pid, user, host, run, since), for the refusal message.
Lock dir: ``$LABCTL_LOCK_DIR``, else the user's cache directory.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from labctl.errors import LabctlError


class ChipBusy(LabctlError):
    """Another run holds the chip."""


def lock_dir() -> Path:
    explicit = os.environ.get("LABCTL_LOCK_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "labctl" / "locks"


@contextmanager
def chip_lock(chip: str, purpose: str = "") -> Iterator[dict[str, object]]:
    directory = lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{chip}.lock"
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise ChipBusy(f"{chip} is in use: {_describe(handle.read())}") from None
        handle.seek(0)
        previous = handle.read()
        holder = {"pid": os.getpid(), "user": _user(), "host": socket.gethostname(), "purpose": purpose,
                  "since": datetime.now(UTC).isoformat(timespec="seconds")}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder))
        handle.flush()
        holder["took_over"] = _describe(previous) if previous.strip() else None
        yield holder
        handle.seek(0)
        handle.truncate()
        handle.flush()
    finally:
        handle.close()  # releases the flock


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
    except ValueError:
        return "by another process"
    return (f"pid {holder.get('pid')} ({holder.get('user')}@{holder.get('host')}, {holder.get('purpose') or 'a run'}, "
            f"since {holder.get('since')})")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
