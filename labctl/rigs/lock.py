"""One run per rig at a time, whatever the rig is called and whoever runs it.

What is locked is what is physical: every instrument's resource, normalised so that
``TCPIP::localhost::5025::SOCKET`` and ``TCPIP0::127.0.0.1::5025::SOCKET`` are one
key, and a serial port reached through a ``/dev/serial/by-id`` link is its device; plus
the chip's name, which its calibration records hang on. A run takes every key of its
chip or none.

Each key is held two ways at once:

- an ``flock`` on ``<lock dir>/<hash>.lock``. The lock directory is shared by every
  user of the host (``/run/lock/labctl``, sticky and world-writable like ``/tmp``;
  ``$LABCTL_LOCK_DIR`` to choose another, e.g. one on NFS shared by several hosts,
  where flock needs working NFS locking). The file also says who holds the key (pid,
  user, host, purpose, since), for the refusal message;
- on Linux, an abstract Unix socket named after the lock directory and the key: a
  host-wide name no user can delete, so removing the lock directory mid-run does not
  let a second run in.

The kernel releases both when the holder exits, however it dies, so a lock left by a
dead process is simply taken over.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import hashlib
import json
import os
import re
import socket
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from labctl.errors import LabctlError, UsageError

SHARED_LOCK_DIR = Path("/run/lock/labctl")


class ChipBusy(LabctlError):
    """Another run holds the chip (or one of its instruments)."""


def lock_dir() -> Path:
    explicit = os.environ.get("LABCTL_LOCK_DIR")
    if explicit:
        return Path(explicit)
    if SHARED_LOCK_DIR.parent.is_dir():
        return SHARED_LOCK_DIR
    import tempfile

    return Path(tempfile.gettempdir()) / "labctl-locks"


def resource_key(resource: str) -> str:
    """The instrument a resource string reaches, however it is spelled."""
    text = resource.strip()
    visa = re.fullmatch(r"(?i)TCPIP\d*::([^:]+)::(\d+)::SOCKET", text)
    if visa:
        return f"tcp:{_host_key(visa[1])}:{int(visa[2])}"
    vxi = re.fullmatch(r"(?i)TCPIP\d*::([^:]+)(?:::([^:]+))?::INSTR", text)
    if vxi:
        return f"vxi11:{_host_key(vxi[1])}:{(vxi[2] or 'inst0').lower()}"
    url = re.fullmatch(r"(?i)socket://([^:/]+):(\d+)", text)
    if url:
        return f"tcp:{_host_key(url[1])}:{int(url[2])}"
    serial = re.fullmatch(r"(?i)ASRL(/.+)::INSTR", text)
    if serial or text.startswith("/"):
        return f"serial:{os.path.realpath(serial[1] if serial else text)}"
    return "resource:" + re.sub(r"(?i)^(GPIB|USB|ASRL|TCPIP)\d*", lambda m: m[1].upper() + "0", text).lower()


def _host_key(host: str) -> str:
    """One name per machine: every loopback spelling is ``loopback``; a name, its address."""
    import ipaddress

    try:
        addresses = {info[4][0].split("%")[0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return host.lower()
    if addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses):
        return "loopback"
    return min(addresses) if addresses else host.lower()


@contextmanager
def chip_lock(chip: str, purpose: str = "", resources: Iterable[str | None] = ()) -> Iterator[dict[str, object]]:
    """Hold ``chip`` and every one of its instruments' ``resources`` until the block ends.

    Raises ``ChipBusy`` (naming the holder) if any is held, ``UsageError`` if the lock
    directory cannot be used. Yields the holder record, with ``took_over`` describing a
    dead holder whose lock this run took over.
    """
    keys = [f"chip:{chip}", *sorted({resource_key(r) for r in resources if r})]
    directory = _usable_directory(lock_dir())
    holder: dict[str, object] = {"pid": os.getpid(), "user": _user(), "host": socket.gethostname(),
                                 "purpose": purpose, "chip": chip,
                                 "since": datetime.now(UTC).isoformat(timespec="seconds")}
    took_over: list[str] = []
    with ExitStack() as held:
        for key in keys:
            previous = held.enter_context(_hold(directory, key, chip, holder))
            if previous:
                took_over.append(previous)
        yield {**holder, "took_over": took_over[0] if took_over else None}


@contextmanager
def _hold(directory: Path, key: str, chip: str, holder: dict[str, object]) -> Iterator[str | None]:
    digest = hashlib.sha256(f"{directory.resolve()}\0{key}".encode()).hexdigest()[:24]
    what = chip if key == f"chip:{chip}" else f"{chip}'s instrument {key.split(':', 1)[1]}"
    with ExitStack() as stack:
        name = _abstract_socket(digest)
        handle = _open_lock_file(directory / f"{digest}.lock")
        stack.callback(os.close, handle)
        if name is not None and not _bind(stack, name) or not _flock(handle):
            raise ChipBusy(f"{what} is in use: {_describe(_read(handle))}")
        previous = _read(handle)
        writable = _write(handle, json.dumps({**holder, "key": key}))
        try:
            yield _describe(previous) if previous.strip() else None
        finally:
            if writable:
                _write(handle, "")  # the run is over, whether it passed, failed or was refused


def _usable_directory(directory: Path) -> Path:
    """The lock directory, made if missing; shared with every user when it is the default."""
    try:
        if not directory.exists():
            directory.mkdir(parents=True, exist_ok=True)
            if not os.environ.get("LABCTL_LOCK_DIR"):  # the host's shared default
                os.chmod(directory, 0o1777)  # like /tmp: anyone may lock, no one may delete another's file
        if not directory.is_dir():
            raise UsageError(f"lock directory {str(directory)!r} is not a directory (set LABCTL_LOCK_DIR)")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise UsageError(f"lock directory {str(directory)!r} is not writable by {_user()} "
                             "(set LABCTL_LOCK_DIR, or make it writable)")
    except OSError as err:
        raise UsageError(f"lock directory {str(directory)!r}: {err.strerror or err} (set LABCTL_LOCK_DIR)") from None
    return directory


def _open_lock_file(path: Path) -> int:
    """Open for writing where we may; a file another user left read-only is still lockable
    (flock needs no write access), it just cannot say who holds it."""
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        try:
            return os.open(path, os.O_RDONLY)
        except OSError as err:
            raise UsageError(f"lock file {str(path)!r}: {err.strerror or err}") from None
    except OSError as err:
        raise UsageError(f"lock file {str(path)!r}: {err.strerror or err}") from None
    try:
        if os.fstat(handle).st_uid == os.geteuid():
            os.fchmod(handle, 0o666)  # every user of the host locks through this file
    except OSError:
        pass
    return handle


def _flock(handle: int) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _abstract_socket(digest: str) -> bytes | None:
    return f"\0labctl-lock-{digest}".encode() if sys.platform.startswith("linux") else None


def _bind(stack: ExitStack, name: bytes) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(name)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            return False
        return True  # no abstract namespace here: the flock alone holds
    stack.callback(sock.close)
    return True


def _read(handle: int) -> str:
    try:
        return os.pread(handle, 65536, 0).decode("utf-8", "replace")
    except OSError:
        return ""


def _write(handle: int, text: str) -> bool:
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, text.encode(), 0)
    except OSError:
        return False
    return True


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
    except ValueError:
        return "by another process"
    if not isinstance(holder, dict):
        return "by another process"
    return (f"pid {holder.get('pid')} ({holder.get('user')}@{holder.get('host')}, {holder.get('purpose') or 'a run'}"
            + (f" on {holder.get('chip')}" if holder.get("chip") else "") + f", since {holder.get('since')})")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
