"""Names that become paths: chip names and run ids.

A chip name is a Hive partition (``chip=<name>``), part of a lock file's name and of a
staging directory; a run id is a directory under ``runs/`` and a report's folder. So
neither may hold a path separator, ``..``, ``=`` or anything a shell, cron or systemd
treats specially: both are checked against one safe pattern wherever they come in.
"""

from __future__ import annotations

import re

from labctl.errors import UsageError

_CHIP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def is_chip_name(name: str) -> bool:
    return bool(_CHIP.fullmatch(name)) and ".." not in name


def check_chip_name(name: str, where: str = "chip") -> str:
    if not is_chip_name(name):
        raise UsageError(f"{where} {name!r}: a chip name is 1-64 letters, digits, '_', '-' or '.', "
                         "starting with a letter or digit")
    return name


def is_run_id(run_id: str) -> bool:
    return bool(_RUN.fullmatch(run_id))


def check_run_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise UsageError(f"run id {run_id!r} is not a run id (letters, digits, '_' and '-', "
                         "as 'labctl runs list' shows them)")
    return run_id
