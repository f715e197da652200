"""The twin's SMU driven by the field's own drivers, unchanged, over TCP (pyvisa-py).

A lab that already scripts its Keithley 2450 with PyMeasure or QCoDeS must be able to point
the same script at the twin: the same headers (optional nodes in any combination, as SCPI
defines them), the same settings read back, and the right current through a routed cell.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from labctl_drivers import Board, VisaTransport
from labctl_sims.server import RigServer, TwinRig

ROW, COL, VOLTS = 3, 4, 0.2


@pytest.fixture
def served():
    rig = TwinRig.build("pcm", rows=16, cols=16, seed=0)
    set_high(rig)
    with RigServer(rig, pty=False) as server:
        board = Board(VisaTransport(server.visa_resource("board")))
        yield rig, server, board
        board.route_probe(None)
        board.close()


def set_high(rig) -> None:
    """SET the probed cell near the top of its window (about 20 µS, among neighbours at 1-3 µS),
    where its 1/f read noise is about 1 % of its current; a fabricated cell near 1 µS reads
    10 % off its noiseless conductance, and a 5 % check there would test luck, not routing."""
    pulse = np.zeros((1, rig.chip.cols), dtype=np.int16)
    pulse[0, COL] = 1400
    for _ in range(8):
        rig.chip.program(0, slice(ROW, ROW + 1), pulse, 100.0)
    rig.chip.advance(1.0)


def expected_current_a(rig) -> float:
    return VOLTS * float(rig.chip.ground_truth().conductance_us[0, ROW, COL]) * 1e-6


def test_pymeasures_keithley2450_sources_and_measures_a_routed_cell(served):
    keithley2450 = pytest.importorskip("pymeasure.instruments.keithley.keithley2450")
    rig, server, board = served
    smu = keithley2450.Keithley2450(server.visa_resource("smu"), visa_library="@py", read_termination="\n",
                                    write_termination="\n", timeout=2000)
    try:
        assert "MODEL 2450" in smu.id
        smu.reset()
        smu.apply_voltage(compliance_current=1e-4)
        smu.measure_current(nplc=1, current=1e-4, auto_range=True)
        smu.source_voltage = VOLTS  # :SOUR:VOLT:LEV, an optional node the twin once refused
        smu.current_range = 1e-5  # :SENS:CURR:RANG:AUTO 0;:SENS:CURR:RANG 1e-05
        smu.enable_source()
        board.route_probe(ROW, COL)
        assert smu.source_voltage == pytest.approx(VOLTS) and smu.source_enabled
        assert smu.current_range == pytest.approx(1e-5) and smu.compliance_current == pytest.approx(1e-4)
        assert smu.current == pytest.approx(expected_current_a(rig), rel=0.05)  # the cell's 1/f noise
        assert smu.check_errors() == []
        smu.shutdown()
        assert not smu.source_enabled and smu.source_voltage == 0.0
    finally:
        smu.adapter.close()


def test_qcodes_keithley2450_connects_snapshots_every_parameter_and_measures(served, caplog):
    qcodes = pytest.importorskip("qcodes.instrument_drivers.Keithley")
    rig, server, board = served
    smu = qcodes.Keithley2450("twin_smu", server.visa_resource("smu"), visalib="@py", terminator="\n", timeout=2)
    try:
        # what a user sets before a full snapshot on a real 2450 too: the user delay to show (QCoDeS
        # asks for DELay:USERNone otherwise) and a sweep (its axis is computed, not queried)
        for sub in smu.submodules.values():
            if "user_number" in sub.parameters:
                sub.user_number(1)
        smu.source.sweep_setup(0.0, VOLTS, 3)
        with caplog.at_level(logging.WARNING):
            snapshot = smu.snapshot(update=True)
        failed = [r.getMessage() for r in caplog.records if "Could not update" in r.getMessage()]
        # every query the snapshot made was answered: nothing on the twin's error queue, and the one
        # parameter left is the current source's sweep axis, which QCoDeS computes from a sweep
        # set up for the active (voltage) source only, asking the instrument nothing
        assert len(rig.smu.errors) == 0
        assert len(failed) <= 1 and all(m.endswith("sweep_axis") for m in failed)
        assert len(snapshot["submodules"]) == 6
        assert float(snapshot["parameters"]["line_frequency"]["value"]) == 50
        assert snapshot["submodules"]["_source_voltage"]["parameters"]["limit"]["value"] == pytest.approx(1.05e-4)
        smu.source.voltage(VOLTS)
        smu.source.limit(1e-4)
        smu.output_enabled(True)
        board.route_probe(ROW, COL)
        assert smu.sense.current() == pytest.approx(expected_current_a(rig), rel=0.05)
        smu.output_enabled(False)
        assert len(rig.smu.errors) == 0
    finally:
        smu.close()


def test_optional_nodes_are_optional_one_by_one():
    """SCPI's rule, not a list of spellings: each bracketed node may be given or not."""
    from labctl_sims.scpi import _expand_optional

    forms = {":".join(v) for v in _expand_optional("SOURce:VOLTage[:LEVel][:IMMediate][:AMPLitude]")}
    assert len(forms) == 8 and "SOURce:VOLTage:IMMediate" in forms and "SOURce:VOLTage:LEVel:AMPLitude" in forms
    rig = TwinRig.build("pcm", rows=4, cols=4, seed=0)
    replies = [rig.smu.feed(message) for message in (b":SOUR:VOLT:LEV 0.1\n", b":SOUR1:VOLT:IMM:AMPL?\n",
                                                     b"SOURCE:VOLTAGE:LEVEL:IMMEDIATE?\n", b"SOUR:VOLT:AMPL:LEV?\n")]
    assert replies[1:3] == [b"0.1\n", b"0.1\n"]
    assert replies[3] == b"" and rig.smu.errors.pop()[0] == -113  # the nodes' order is not optional
    assert np.isclose(rig.smu.voltage, 0.1)


def test_qcodes_lakeshore335_snapshots_every_parameter_and_sets_the_chips_temperature(served, caplog):
    lakeshore = pytest.importorskip("qcodes.instrument_drivers.Lakeshore")
    rig, server, _ = served
    tc = lakeshore.LakeshoreModel335("twin_335", server.visa_resource("temperature"), visalib="@py",
                                     terminator="\r\n", timeout=2)
    try:
        with caplog.at_level(logging.WARNING):
            snapshot = tc.snapshot(update=True)
        assert [r.getMessage() for r in caplog.records if "Could not update" in r.getMessage()] == []
        assert tc.A.sensor_type() == "platinum_rtd" and tc.output_1.mode() == "closed_loop"
        assert tc.A.sensor_raw() == pytest.approx(100 * (1 + 3.9083e-3 * 26.85 - 5.775e-7 * 26.85**2), abs=0.1)
        assert len(snapshot["submodules"]) >= 4
        tc.output_1.output_range("low")
        tc.output_1.setpoint(310.0)
        assert tc.ask("*OPC?") == "1"  # the writes are taken before the twin's clock moves
        rig.chip.advance(600.0)  # the twin's clock: ten thermal time constants
        assert tc.A.temperature() == pytest.approx(310.0, abs=0.5)
        assert 0 < tc.output_1.output() <= 100  # heating, within the low range's power
        tc.output_1.mode("off")  # no closed loop: the heater stops, the chip cools to ambient
        assert tc.ask("*OPC?") == "1"
        rig.chip.advance(600.0)
        assert tc.A.temperature() == pytest.approx(rig.chip.thermal.ambient_k, abs=0.5)
        assert tc.ask("*ESR?") == "0"  # nothing it sent was refused
    finally:
        tc.close()


def test_pymeasures_lakeshore_reads_the_chip_and_sets_its_loop(served):
    lakeshore3xx = pytest.importorskip("pymeasure.instruments.lakeshore.lakeshore3xx")
    rig, server, _ = served
    tc = lakeshore3xx.LakeShore3xx(server.visa_resource("temperature"), visa_library="@py",
                                   read_termination="\r\n", write_termination="\r\n", timeout=2000)
    try:
        assert "MODEL335" in tc.id
        within_noise = 5 * rig.chip.params.sensor_noise_k  # each query is a new noisy sensor reading
        assert tc.input_A.kelvin == pytest.approx(rig.chip.temperature_k, abs=within_noise)
        assert tc.input_A.celsius == pytest.approx(rig.chip.temperature_k - 273.15, abs=within_noise)
        tc.output_1.range = "medium"  # PyMeasure's control (its docstring's ``heater_range`` is no property)
        tc.output_1.setpoint = 320.0
        assert tc.ask("*OPC?").strip() == "1"  # the writes are taken before the twin's clock moves
        assert rig.chip.thermal.heater_range == 2  # the twin's loop 1 got it
        rig.chip.advance(600.0)
        assert tc.output_1.range == "medium" and tc.output_1.setpoint == pytest.approx(320.0)
        assert tc.input_A.kelvin == pytest.approx(320.0, abs=0.5) and 0 < tc.output_1.output <= 100
        assert tc.ask("*ESR?").strip() == "0"
    finally:
        tc.adapter.close()


def test_a_refused_lake_shore_command_sets_an_event_status_bit_and_has_no_error_queue():
    rig = TwinRig.build("pcm", rows=4, cols=4, seed=0)
    assert rig.temperature.feed(b"KRDG? A\r\n").endswith(b"\r\n")  # a 335's terminator
    assert rig.temperature.feed(b"SETP 1,900\r\n") == b""  # out of range: refused, nothing changed
    assert rig.temperature.feed(b"*ESR?\r\n") == b"16\r\n"  # execution error
    assert rig.temperature.feed(b"SYST:ERR?\r\n") == b"" and rig.temperature.feed(b"*ESR?\r\n") == b"32\r\n"


def test_in_wall_clock_mode_pymeasures_wait_for_temperature_sees_the_set_point_reached():
    """A driver that waits in real time: with the twin's clock following the wall, the chip
    (here with a half-second thermal lag) reaches the set point while the driver polls."""
    lakeshore3xx = pytest.importorskip("pymeasure.instruments.lakeshore.lakeshore3xx")
    rig = TwinRig.build("pcm", rows=4, cols=4, seed=0, overrides={"thermal_tau_s": 0.5})
    rig.follow_wall_clock()
    with RigServer(rig, pty=False) as server:
        tc = lakeshore3xx.LakeShore3xx(server.visa_resource("temperature"), visa_library="@py",
                                       read_termination="\r\n", write_termination="\r\n", timeout=2000)
        try:
            started = rig.chip.clock.now()
            tc.output_1.setpoint = 305.0
            tc.input_A.wait_for_temperature(305.0, accuracy=0.1, interval=0.1, timeout=60)  # within 0.1 %
            assert tc.input_A.kelvin == pytest.approx(305.0, abs=0.5)
            assert rig.chip.clock.now() - started > 0.5  # the clock moved with real time between the polls
        finally:
            tc.adapter.close()
    virtual = TwinRig.build("pcm", rows=4, cols=4, seed=0)
    before = virtual.chip.clock.now()
    virtual.catch_up()  # virtual mode: only what the chip does moves its clock
    assert virtual.chip.clock.now() == before


def test_a_rig_whose_smu_is_a_pymeasure_class_calibrates_its_read_out_and_passes_doctor(tmp_path):
    """lab.toml names PyMeasure's Keithley2450 for the SMU; read-out calibration runs through it
    (its gains against the twin's trims within what the labctl driver gets on the same chip), the
    chip's limits are checked before PyMeasure sends anything, and doctor identifies it."""
    pytest.importorskip("pymeasure")
    from typer.testing import CliRunner

    from labctl import api
    from labctl.cli import app

    rig = TwinRig.build("pcm", rows=16, cols=16, seed=1, overrides={"wire_ohm": 0.0})
    with RigServer(rig, pty=False) as server:
        options = '{ visa_library = "@py", read_termination = "\\n", write_termination = "\\n", timeout = 3000 }'
        config = tmp_path / "lab.toml"
        config.write_text(f'[chips.field]\nboard = "{server.visa_resource("board")}"\n'
                          f'smu = {{ driver = "pymeasure:Keithley2450", resource = "{server.visa_resource("smu")}", '
                          f'options = {options} }}\n')
        protocol = tmp_path / "readout.toml"
        protocol.write_text('name = "readout-only"\nsteps = ["readout"]\n')
        outcome = api.calibrate("field", config=config, protocol=protocol, data=tmp_path / "data", fresh=True)
        readout = outcome.steps["readout"]
        assert readout["source"].startswith("calibrated in run") and readout["reference_levels"] == 16
        truth = rig.chip.ground_truth()
        gains = pd.read_parquet(tmp_path / "data" / "readout").sort_values("col")["gain"].to_numpy()
        gain_error = np.sqrt(np.mean((gains / truth.adc_gain[0] - 1) ** 2))
        assert gain_error < 0.02  # the trims spread 0.5 %; one column's 16 cells resolve about 1 %
        assert rig.smu.output is False and np.isclose(rig.smu.voltage, 0.0)  # left safe
        doctor = CliRunner().invoke(app, ["doctor", "field", "--config", str(config)])
        smu_row = next(line for line in doctor.output.splitlines() if line.startswith("│ smu"))
        assert doctor.exit_code == 0 and "pymeasure:Keith" in smu_row and "KEITHLEY" in smu_row, doctor.output
        # a limit beyond the chip's is refused before the wire
        from labctl_drivers.field import FieldSmu
        from labctl_drivers.safety import SafeOperatingArea

        smu = FieldSmu.open("pymeasure:Keithley2450", server.visa_resource("smu"),
                            {"visa_library": "@py", "read_termination": "\n", "write_termination": "\n"},
                            soa=SafeOperatingArea())
        try:
            before = rig.smu.voltage
            with pytest.raises(Exception, match="outside the safe range"):
                smu.source_voltage = 5.0
            assert rig.smu.voltage == before
        finally:
            smu.close()


def test_a_rig_whose_smu_is_a_qcodes_class_calibrates_its_read_out(tmp_path):
    """The same with QCoDeS's Keithley2450: its source/sense submodules behind the chip's limits."""
    pytest.importorskip("qcodes.instrument_drivers.Keithley")
    from labctl import api
    from labctl_drivers.field import open_field_instrument
    from labctl_drivers.safety import SafeOperatingArea

    rig = TwinRig.build("pcm", rows=16, cols=16, seed=1, overrides={"wire_ohm": 0.0})
    with RigServer(rig, pty=False) as server:
        config = tmp_path / "lab.toml"
        config.write_text(f'[chips.field]\nboard = "{server.visa_resource("board")}"\n'
                          f'smu = {{ driver = "qcodes:Keithley2450", resource = "{server.visa_resource("smu")}", '
                          'options = { visalib = "@py", terminator = "\\n", timeout = 3 } }\n')
        protocol = tmp_path / "readout.toml"
        protocol.write_text('name = "readout-only"\nsteps = ["readout"]\n')
        outcome = api.calibrate("field", config=config, protocol=protocol, data=tmp_path / "data", fresh=True)
        assert outcome.steps["readout"]["source"].startswith("calibrated in run")
        truth = rig.chip.ground_truth()
        gains = pd.read_parquet(tmp_path / "data" / "readout").sort_values("col")["gain"].to_numpy()
        assert np.sqrt(np.mean((gains / truth.adc_gain[0] - 1) ** 2)) < 0.02
        assert rig.smu.output is False and np.isclose(rig.smu.voltage, 0.0) and len(rig.smu.errors) == 0
        smu = open_field_instrument("smu", "qcodes:Keithley.Keithley2450", server.visa_resource("smu"),
                                     {"visalib": "@py", "terminator": "\n"}, name="smu2", soa=SafeOperatingArea())
        try:
            assert "KEITHLEY" in smu.identify().upper()
            with pytest.raises(Exception, match="outside the safe range"):
                smu.current_limit = 0.5
            assert len(rig.smu.errors) == 0
        finally:
            smu.close()


def test_an_smu_registered_in_the_instruments_entry_point_group_is_opened_by_name(tmp_path):
    """``smu = { driver = "keithley2450", ... }``: labctl's own 2450 driver through the
    ``labctl.instruments`` group, as a lab's package would register its SMU; read-out
    calibration runs through it and an unregistered name is one line at exit 2."""
    from typer.testing import CliRunner

    from labctl import api
    from labctl.cli import app

    rig = TwinRig.build("pcm", rows=8, cols=8, seed=2, overrides={"wire_ohm": 0.0})
    with RigServer(rig, pty=False) as server:
        config = tmp_path / "lab.toml"
        config.write_text(f'[chips.p]\nboard = "{server.visa_resource("board")}"\n'
                          f'smu = {{ driver = "keithley2450", resource = "{server.visa_resource("smu")}" }}\n')
        protocol = tmp_path / "readout.toml"
        protocol.write_text('name = "readout-only"\nsteps = ["readout"]\n')
        outcome = api.calibrate("p", config=config, protocol=protocol, data=tmp_path / "data", fresh=True)
        assert outcome.steps["readout"]["source"].startswith("calibrated in run")
        assert rig.smu.output is False
    config.write_text('[chips.q]\nboard = "TCPIP::127.0.0.1::1::SOCKET"\nsmu = { driver = "nosuchsmu", resource = "X" }\n')
    result = CliRunner().invoke(app, ["rigs", "--config", str(config)])
    assert result.exit_code == 2 and "no instrument driver 'nosuchsmu' is installed" in result.output
    assert "keithley2450" in result.output


def test_a_field_driver_that_is_not_one_is_refused_in_one_line(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "lab.toml"
    config.write_text('[chips.x]\nboard = "TCPIP::127.0.0.1::1::SOCKET"\nsmu = { driver = "labview:Thing", resource = "X" }\n')
    done = subprocess.run([sys.executable, "-m", "labctl", "rigs", "--config", str(config)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "chips.x.smu: driver" in done.stderr and "pymeasure:<Class>" in done.stderr
