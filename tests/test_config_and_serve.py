"""lab.toml, `labctl rigs`, `labctl doctor`, and `labctl calibrate --config` against `labctl sim serve`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.rigs.config import resolve_chip
from labctl.errors import UsageError

runner = CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ('[chips.c1]\nboard = "TCPIP::h::1::SOCKET"\nsmuu = "x"\n', "chips.c1.smuu: unknown key"),
        ("[chips.c1]\nsmu = \"x\"\n", "either 'twin'"),
        ('[chips.c1]\nboard = "x"\n[chips.c1.limits]\nset_max_mv = -5\n', "chips.c1.limits.set_max_mv"),
        ('[chips.c1]\nboard = "x"\nwindow_us = [5, 1]\n', "window_us"),
        ('[chips.c1]\ntwin = { preset = "flash" }\n', "chips.c1.twin.preset"),
        ('[chips.c1]\ntwin = { size = "big" }\n', "twin.size 'big'"),
        ('[chips.c1]\ntwin = { params = { wire_ohmm = 1 } }\n', "chips.c1.twin: unknown twin parameter 'wire_ohmm'"),
        ('[chips.c1]\ntwin = { params = { rtn_fraction = -1 } }\n', "rtn_fraction=-1.0 cannot be negative"),
        ("[chips.c1\n", "invalid TOML"),
        ('[chips.c1]\nboard = "x"\n[chips.c1.limits]\ntemperature_min_k = 400\ntemperature_max_k = 300\n',
         "temperature_min_k must be below"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, message):
    path = write(tmp_path / "lab.toml", text)
    with pytest.raises(UsageError) as caught:
        resolve_chip("chip0", config=path)
    assert message in str(caught.value) and "lab.toml" in str(caught.value)
    result = runner.invoke(app, ["rigs", "--config", str(path)])
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_is_found_by_environment_and_working_directory(tmp_path, monkeypatch):
    write(tmp_path / "lab.toml", '[chips.benchA]\nboard = "/dev/ttyACM0"\n')
    monkeypatch.chdir(tmp_path)
    assert resolve_chip("benchA").config.board == "/dev/ttyACM0"
    other = write(tmp_path / "other.toml", '[chips.benchB]\nboard = "TCPIP::10.0.0.9::5025::SOCKET"\n')
    monkeypatch.setenv("LABCTL_CONFIG", str(other))
    assert resolve_chip("benchB").config.board.startswith("TCPIP")
    assert resolve_chip("chip0").is_twin  # the built-in twin stays available


def test_missing_config_file_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["rigs", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "not found" in result.stderr


def test_twin_options_only_for_in_process_twins(tmp_path):
    path = write(tmp_path / "lab.toml", '[chips.c1]\nboard = "/dev/ttyACM0"\n')
    with pytest.raises(UsageError, match="in-process twins"):
        resolve_chip("c1", size="8x8", config=path)


def test_rigs_lists_the_configured_chips(tmp_path):
    path = write(tmp_path / "lab.toml", '[chips.c1]\nboard = "/dev/ttyACM0"\nsmu = "TCPIP::h::5025::SOCKET"\n')
    result = runner.invoke(app, ["rigs", "--config", str(path)])
    assert result.exit_code == 0
    assert "chip0" in result.stdout and "c1" in result.stdout and "/dev/ttyACM0" in result.stdout


def test_doctor_on_the_builtin_twin():
    result = runner.invoke(app, ["doctor", "chip0"])
    assert result.exit_code == 0, result.output
    for name in ("board", "smu", "temperature", "LABCTL,ACB-TWIN", "KEITHLEY", "LSCI"):
        assert name in result.stdout


def test_doctor_reports_a_missing_board_and_exits_1(tmp_path):
    path = write(tmp_path / "lab.toml", '[chips.c1]\nboard = "/dev/does-not-exist"\n')
    result = runner.invoke(app, ["doctor", "c1", "--config", str(path)])
    assert result.exit_code == 1
    assert "FAIL" in result.stdout


def test_calibrate_with_an_unreachable_board_is_one_line_exit_1(tmp_path):
    path = write(tmp_path / "lab.toml", '[chips.c1]\nboard = "/dev/does-not-exist"\n')
    result = runner.invoke(app, ["calibrate", "c1", "--config", str(path), "--data", str(tmp_path / "d"), "-q"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "/dev/does-not-exist" in result.stderr
    assert not (tmp_path / "d").exists()


# ---- against `labctl sim serve` in another process ---------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("served")
    process = subprocess.Popen(
        [sys.executable, "-m", "labctl", "sim", "serve", "--size", "32x32", "--seed", "2", "--chip", "tcpchip"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ctrl-C"):
            break
    output = "".join(lines)
    assert "lab.toml:" in output, output + process.stderr.read()
    snippet = output.split("lab.toml:\n", 1)[1].split("\n\n", 1)[0]
    ptys = re.findall(r"(/dev/pts/\d+)", snippet)
    serial = snippet.replace("[chips.tcpchip]", "[chips.serialchip]")
    for tcp, pty in zip(re.findall(r'= "(TCPIP[^"]+)"', snippet), ptys):
        serial = serial.replace(f'"{tcp}"', f'"{pty}"', 1)
    config = write(workdir / "lab.toml", snippet + "\n\n" + serial + "\n")
    yield workdir, config, process
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("chip", ["tcpchip", "serialchip"])
def test_calibrate_against_a_served_twin(served, chip):
    workdir, config, _ = served
    done = subprocess.run(
        [sys.executable, "-m", "labctl", "calibrate", chip, "--config", str(config), "--json", "-q",
         "--data", str(workdir / "data")],
        capture_output=True, text=True, timeout=300, cwd=workdir,
        env={k: v for k, v in os.environ.items() if k != "LABCTL_CONFIG"},
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["cells"] == 1024 and summary["converged_fraction"] >= 0.93
    manifest = json.loads((workdir / "data" / "runs" / summary["run_id"] / "manifest.json").read_text())
    assert set(manifest["instruments"]) == {"board", "smu", "temperature"}
    assert manifest["instruments"]["smu"]["idn"].startswith("KEITHLEY INSTRUMENTS,MODEL 2450")
    assert manifest["instruments"]["temperature"]["idn"].startswith("LSCI,MODEL335")


def test_doctor_against_a_served_twin(served):
    _, config, _ = served
    result = runner.invoke(app, ["doctor", "serialchip", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "/dev/pts/" in result.stdout and "KEITHLEY" in result.stdout


def test_sim_serve_stops_cleanly_on_ctrl_c(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "labctl", "sim", "serve", "--size", "8x8"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    while not process.stdout.readline().startswith("Ctrl-C"):
        pass
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
    assert "twin rig stopped" in process.stderr.read()


@pytest.mark.parametrize("fault", ["drop", "drop:2", "noise:0.1", "drop:x"])
def test_sim_serve_bad_fault_is_a_usage_error(fault):
    result = runner.invoke(app, ["sim", "serve", "--fault", fault])
    assert result.exit_code == 2 and "--fault" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--set", "rtn_fraction"], "--set 'rtn_fraction': expected NAME=VALUE"),
    (["--set", "rtn_fraction=lots"], "--set 'rtn_fraction=lots'"),
    (["--set", "no_such=1"], "unknown twin parameter 'no_such'"),
    (["--ir-drop", "-0.1"], "wire_ohm=-0.1 cannot be negative"),
    (["--clock", "lunar"], "--clock 'lunar': expected virtual or wall"),
])
def test_sim_serve_bad_physics_is_a_usage_error(args, message):
    result = runner.invoke(app, ["sim", "serve", *args])
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sim_serve_changes_the_physics_it_is_asked_to(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "labctl", "sim", "serve", "--size", "8x8", "--ir-drop", "0.35",
                                "--set", "rtn_fraction=0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=tmp_path)
    banner = process.stdout.readline()
    while not process.stdout.readline().startswith("Ctrl-C"):
        pass
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
    assert "IR drop 0.35 ohm/segment" in banner and "rtn_fraction=0" in banner, banner


def test_a_twin_with_changed_physics_calibrates_and_is_another_chip(tmp_path):
    config = write(tmp_path / "lab.toml", '[chips.c1]\ntwin = { size = "16x16", params = { wire_ohm = 0.35 } }\n')
    result = runner.invoke(app, ["calibrate", "c1", "--config", str(config), "--data", str(tmp_path / "d"), "--json",
                                 "-q"])
    assert result.exit_code in (0, 1), result.output  # a run, judged by its acceptance
    manifests = list((tmp_path / "d" / "runs").glob("*/manifest.json"))
    assert len(manifests) == 1 and "TWIN-PCM-S0-16X16-P" in manifests[0].read_text()


def _as_a_foreground_job() -> None:
    """Ctrl-C reaches a run started at a prompt; a script's background job (CI's, for one) starts
    with SIGINT ignored, which Python and so labctl respect: the run would go on, as it should."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_leaves_the_smu_off_and_the_run_aborted_and_resumable(served, sig):
    from labctl_drivers import Keithley2450, VisaTransport

    workdir, config, _ = served
    snippet = config.read_text()
    smu_resource = re.search(r'\[chips\.tcpchip\][^\[]*smu = "(TCPIP[^"]+)"', snippet)[1]
    watcher = Keithley2450(VisaTransport(smu_resource))
    data = workdir / f"signal-{int(sig)}"
    # the served SMU outlives each run of this module: start from it off, so "on" means this run's read-out
    watcher.shutdown()
    assert watcher.output_enabled is False
    process = subprocess.Popen(
        [sys.executable, "-m", "labctl", "calibrate", "tcpchip", "--config", str(config), "-q", "--fresh",
         "--data", str(data)], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "LABCTL_CONFIG"}, preexec_fn=_as_a_foreground_job,
    )
    deadline = time.time() + 120
    while not watcher.output_enabled and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)  # the read-out step switches the SMU on
    assert process.poll() is None, "the run ended before the SMU was on"
    process.send_signal(sig)
    assert process.wait(timeout=60) == 130, process.stderr.read()[-2000:]
    stderr = process.stderr.read()
    assert watcher.output_enabled is False and watcher.source_voltage == 0.0
    (manifest,) = (data / "runs").glob("*/manifest.json")
    run_id = manifest.parent.name
    assert stderr.strip().splitlines() == [  # one line: which run, and how to go on
        f"labctl: error: run {run_id} interrupted and marked aborted, the rig left safe; "
        f"'labctl resume {run_id}' continues it"]
    assert json.loads(manifest.read_text())["status"] == "aborted"
    resumed = subprocess.run(
        [sys.executable, "-m", "labctl", "resume", manifest.parent.name, "--config", str(config), "-q", "--json",
         "--data", str(data)], cwd=workdir, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "LABCTL_CONFIG"})
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(manifest.read_text())["status"] == "completed"
    assert watcher.output_enabled is False
    watcher.close()
