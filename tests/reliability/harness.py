"""Shared by the reliability tests: a served rig's lab.toml, labctl as a process, manifests.

The reliability campaign (crashes, wire faults, hostile input, concurrency, disk trouble)
carries the ``reliability`` marker: ``pytest -m reliability`` runs just it. CI runs a
short campaign; ``LABCTL_CAMPAIGN=N`` multiplies kill points and fuzzing examples by N
(``LABCTL_CAMPAIGN=10 pytest -m reliability``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CAMPAIGN = max(1, int(os.environ.get("LABCTL_CAMPAIGN", "1") or 1))


def lab_toml(server, chip: str, *, board: str = "tcp", timeout_s: float = 1.0, trace: Path | None = None,
             extra: str = "") -> str:
    """A lab.toml table for a served twin rig; ``board`` picks its transport (tcp or pty)."""
    lines = [f"[chips.{chip}]"]
    for name in ("board", "smu", "temperature"):
        via = board if name == "board" else "tcp"
        address = server.visa_resource(name) if via == "tcp" else server.serial_path(name)
        lines.append(f'{name} = "{address}"')
    lines += [f"window_us = [0.0, {server.rig.chip.params.g_max_us:g}]", f"timeout_s = {timeout_s}"]
    if trace is not None:
        lines.append(f'trace = "{trace}"')
    return "\n".join(lines) + "\n" + extra


def labctl(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """``labctl`` as a user runs it: its own process, no configuration but what is given."""
    env = {k: v for k, v in os.environ.items() if k not in ("LABCTL_CONFIG", "LABCTL_DATA", "LABCTL_CRASH_AT")}
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "labctl", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def manifests(data: Path) -> dict[str, dict]:
    """Every run with a readable manifest, by id."""
    found = {}
    for path in sorted((data / "runs").glob("*/manifest.json")):
        if path.parent.name.startswith("."):
            continue  # a run being staged: renamed into place (or removed) at any moment, as readers know
        found[path.parent.name] = json.loads(path.read_text())
    return found
