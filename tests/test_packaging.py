"""The built-in protocols travel with the installed package, not only the source tree."""

from __future__ import annotations

from pathlib import Path

import labctl
from labctl.protocol import builtin_protocol_dir, load_protocol


def test_builtin_protocol_is_found_and_valid():
    loaded = load_protocol()
    assert loaded.protocol.name == "calibrate"
    assert Path(loaded.source).parent == builtin_protocol_dir()
    assert len(loaded.sha256) == 64


def test_installed_package_carries_its_protocols():
    package = Path(labctl.__file__).resolve().parent
    if "site-packages" in package.parts or "dist-packages" in package.parts:
        assert builtin_protocol_dir() == package / "_protocols"
    assert (builtin_protocol_dir() / "calibrate.toml").is_file()
