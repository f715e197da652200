"""Shared fixtures: a small twin and a board driver talking to it in process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.register_assert_rewrite("labctl_drivers.contract")  # its asserts explain themselves

import numpy as np

import labctl_sims as sims
from labctl_drivers import Board, InProcessTransport


@pytest.fixture(scope="session", autouse=True)
def private_lock_dir_for_the_session(tmp_path_factory) -> Iterator[None]:
    """Chip locks of tests never meet a user's, or another pytest-xdist worker's: set before
    any module-scoped fixture runs (those run before function-scoped ones, so a module's
    fixture on one worker and the same module's on another would otherwise share the
    host's lock directory and find chip0 busy)."""
    previous = os.environ.get("LABCTL_LOCK_DIR")
    os.environ["LABCTL_LOCK_DIR"] = str(tmp_path_factory.getbasetemp() / "locks")
    yield
    if previous is None:
        os.environ.pop("LABCTL_LOCK_DIR", None)
    else:
        os.environ["LABCTL_LOCK_DIR"] = previous


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path_factory, monkeypatch):
    """Chip locks of tests never meet a user's (or another test session's)."""
    monkeypatch.setenv("LABCTL_LOCK_DIR", str(tmp_path_factory.getbasetemp() / "locks"))


@pytest.fixture
def quiet_preset(monkeypatch) -> str:
    """The PCM preset without read noise (1/f and telegraph): for tests of the periphery and the wire alone."""
    from dataclasses import replace

    from labctl_sims.presets import PRESETS

    monkeypatch.setitem(PRESETS, "pcm-quiet", replace(PRESETS["pcm"], name="pcm-quiet", read_noise_scale=0.0,
                                                                rtn_fraction=0.0))
    return "pcm-quiet"


@contextmanager
def served_twin(workdir: Path, size: str, chip: str, preset: str = "pcm") -> Iterator[Path]:
    """``labctl sim serve`` in a subprocess, and a lab.toml reaching its board over the pty
    (the rest over TCP): a twin that outlives the labctl processes a test kills."""
    process = subprocess.Popen([sys.executable, "-m", "labctl", "sim", "serve", "--size", size, "--chip", chip,
                                "--preset", preset],
                               cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while True:
        line = process.stdout.readline()
        lines.append(line)
        if not line or line.startswith("Ctrl-C"):
            break
    snippet = "".join(lines).split("lab.toml:\n", 1)[1].split("\n\n", 1)[0]
    pty = re.findall(r"# or \"(/dev/pts/\d+)\"", snippet)
    snippet = re.sub(r'board = "[^"]+"', f'board = "{pty[0]}"', snippet)
    config = workdir / "lab.toml"
    config.write_text(snippet + "\n")
    try:
        yield config
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)


@pytest.fixture
def chip() -> sims.ChipModel:
    return sims.ChipModel(preset="pcm", seed=7, rows=16, cols=12)


@pytest.fixture
def twin(chip: sims.ChipModel) -> sims.BoardTwin:
    return sims.BoardTwin(chip)


@pytest.fixture
def board(twin: sims.BoardTwin) -> Board:
    return Board(InProcessTransport(twin.feed, resource="twin://test"))


def block(values, dtype="<i2") -> bytes:
    payload = np.asarray(values, dtype=dtype).tobytes()
    length = str(len(payload)).encode()
    return b"#" + str(len(length)).encode() + length + payload


def parse_block(reply: bytes, dtype="<i2") -> np.ndarray:
    assert reply[:1] == b"#"
    digits = reply[1] - 0x30
    length = int(reply[2 : 2 + digits])
    payload = reply[2 + digits : 2 + digits + length]
    assert reply[2 + digits + length :] == b"\n"
    return np.frombuffer(payload, dtype=dtype)


def pytest_collection_modifyitems(items):
    """Tests under tests/reliability/ form the reliability campaign: ``pytest -m reliability``."""
    for item in items:
        if "reliability" in Path(str(item.fspath)).parent.parts:
            item.add_marker(pytest.mark.reliability)
