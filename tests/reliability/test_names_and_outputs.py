"""Names that become paths, and where labctl writes its outputs.

A chip name from lab.toml or a run id from the command line is never allowed to reach
outside the data directory, the lock directory or ``--out``; an output that cannot be
written is bad input (exit 2, one line), not an internal error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_hostile_input import labctl_main

from labctl.names import is_chip_name, is_run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One small completed calibration to read back."""
    data = tmp_path_factory.mktemp("names") / "data"
    code, _, err = labctl_main(["calibrate", "chip0", "--size", "8x8", "-q", "--data", str(data)])
    assert code in (0, 1), err
    return data


def assert_clean(code: int, err: str) -> None:
    """A result, or one line naming what is wrong; never a traceback or an internal error."""
    assert code in (0, 1, 2), err
    assert "Traceback" not in err and "internal error" not in err, err
    if code:
        assert len(err.strip().splitlines()) == 1 and err.startswith("labctl: error: "), err


def only_run(data: Path) -> str:
    (run_id,) = [p.parent.name for p in data.glob("runs/*/manifest.json")]
    return run_id


@pytest.mark.parametrize("name", ["../../../../victim", "a/b", "/tmp/abs", "..", ".hidden", "chip=1", "x" * 65,
                                  "chip 0", "chip\n* * * * * touch pwned #", "a%b", "a..b", ""])
def test_unsafe_chip_names_are_refused_at_config_load(tmp_path, name):
    assert not is_chip_name(name)
    config = tmp_path / "lab.toml"
    config.write_text(f"[chips.{json.dumps(name)}]\ntwin = {{ size = \"8x8\" }}\n")
    data = tmp_path / "work" / "data"
    data.parent.mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, _, err = labctl_main(["calibrate", name or "x", "--config", str(config), "--data", str(data), "-q"])
    assert code == 2 and "chip name" in err, err
    assert_clean(code, err)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_an_absolute_chip_name_cannot_truncate_a_file(tmp_path):
    victim = tmp_path / "Cargo.lock"
    victim.write_text("precious\n")
    config = tmp_path / "lab.toml"
    config.write_text(f'[chips."{tmp_path / "Cargo"}"]\ntwin = {{ size = "8x8" }}\n')
    os.environ["LABCTL_LOCK_DIR"] = str(tmp_path)  # restored by the autouse fixture's monkeypatch
    code, _, err = labctl_main(["rigs", "--config", str(config)])
    assert code == 2, err
    code, _, err = labctl_main(["calibrate", str(tmp_path / "Cargo"), "--config", str(config), "-q",
                                "--data", str(tmp_path / "data")])
    assert code == 2, err
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("command", [["report", "{bad}", "--out", "{tmp}/out"], ["runs", "show", "{bad}"],
                                     ["export-model", "{bad}"], ["resume", "{bad}"], ["compare", "{bad}", "{bad}"]])
@pytest.mark.parametrize("bad", ["../../secret", "../runs/x", "/etc/passwd", "a/b", ".staging-x", ".."])
def test_run_ids_that_are_paths_are_refused(store, tmp_path, command, bad):
    assert not is_run_id(bad)
    secret = store.parent / "secret" / "manifest.json"  # a manifest outside the store
    secret.parent.mkdir(exist_ok=True)
    secret.write_text(json.dumps({"run_id": "x", "chip": "chip0"}))
    args = [a.format(bad=bad, tmp=tmp_path) for a in command] + ["--data", str(store)]
    code, _, err = labctl_main(args)
    assert code == 2 and "run id" in err, err
    assert not (tmp_path / "out").exists()


def test_report_into_an_existing_file_is_bad_input(store, tmp_path):
    existing = tmp_path / "report.html"
    existing.write_text("mine")
    code, _, err = labctl_main(["report", only_run(store), "--out", str(existing), "--data", str(store)])
    assert code == 2 and "--out" in err, err
    assert existing.read_text() == "mine"


def test_export_model_into_a_missing_directory_is_bad_input(store):
    code, _, err = labctl_main(["export-model", only_run(store), "--out", "/nonexistent/x.json", "--data", str(store)])
    assert code == 2 and "--out" in err, err


@pytest.mark.parametrize("acceptance", ['"passed"', '[{"name": "x", "value": "high", "limit": null}]', "[1, 2]",
                                        '{"a": 1}'])
def test_a_hand_edited_manifest_is_reported_not_a_crash(store, tmp_path, acceptance):
    run_id = only_run(store)
    path = store / "runs" / run_id / "manifest.json"
    original = path.read_text()
    manifest = json.loads(original)
    manifest["acceptance"] = json.loads(acceptance)
    path.write_text(json.dumps(manifest))
    try:
        for args in (["report", run_id, "--out", str(tmp_path / "r")], ["runs", "show", run_id], ["runs", "list"]):
            code, _, err = labctl_main([*args, "--data", str(store)])
            assert_clean(code, err)
            assert code != 3
    finally:
        path.write_text(original)
