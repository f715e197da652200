"""Hostile input, generated: configuration files, protocol files, targets files, command
lines and instrument replies.

Whatever comes in, labctl answers with a result or with one line naming what is wrong
(exit 2 for input, 1 for a run that failed), never a traceback and never exit 3; input
refused with exit 2 leaves no run behind. A driver fed any reply returns a well-formed
value or raises one of its typed errors. And no generated protocol gets a pulse, a read
voltage, an SMU setting or a set point outside the chip's limits onto the wire.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
from harness import CAMPAIGN
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from labctl_drivers.transport import ReplyBuffer

# a warning would be a second line on a user's stderr: here it fails the example
pytestmark = pytest.mark.filterwarnings("error::UserWarning", "error::RuntimeWarning")
ROOT = Path(__file__).parents[2]
BUILTIN = tomllib.loads((ROOT / "protocols" / "calibrate.toml").read_text())
FUZZ = settings(max_examples=30 * CAMPAIGN, deadline=None, derandomize=CAMPAIGN == 1,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def labctl_main(args: list[str]) -> tuple[int, str, str]:
    """The console script in this process: exit code, stdout, stderr."""
    from labctl.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["labctl", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 0
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def assert_clean(code: int, err: str, data: Path | None = None) -> None:
    event(f"exit {code}" + (f": {err.rsplit(': ', 1)[-1].strip()[:50]}" if code else ""))
    assert code in (0, 1, 2), err
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 1 and not err.strip() and data is not None:  # a run that completed and missed an acceptance limit
        (manifest,) = [json.loads(p.read_text()) for p in data.glob("runs/*/manifest.json")]
        assert manifest["status"] == "completed" and manifest["passed"] is False
    elif code:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("labctl: error: "), err
    if code == 2 and data is not None:
        assert not list(data.glob("runs/*/manifest.json")), "input refused, yet a run was left behind"


@contextlib.contextmanager
def scratch(name: str, text: str):
    """A generated file and an empty data directory beside it, gone after the example."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        yield path, Path(tmp) / "data"


# ---- TOML, written for the generated values ----------------------------------------


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf
                                                else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(tables: dict) -> str:
    lines = [f"{key} = {toml_value(value)}" for key, value in tables.items() if not isinstance(value, dict)]
    for name, table in tables.items():
        if isinstance(table, dict):
            lines.append(f"\n[{name}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 2**31, 10**12, 32768]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, 0.3000001]),
    st.text(max_size=12),
    st.sampled_from(["", "1h", "64x64", "0x0", "TCPIP::x::1::SOCKET", "drift", "health"]),
    st.booleans(),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(max_size=6), scalars, max_size=2))


@st.composite
def mutated_protocols(draw) -> str:
    """The built-in protocol with a few keys changed, removed or added, or plain junk."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    document = json.loads(json.dumps(BUILTIN))
    for _ in range(draw(st.integers(1, 3))):
        tables = [name for name, table in document.items() if isinstance(table, dict)]
        section = draw(st.sampled_from([None, *tables]))
        target = document if section is None else document[section]
        keys = [k for k in target if not isinstance(target[k], dict)]
        action = draw(st.sampled_from(["change", "change", "remove", "add"]))
        if action == "add" or not keys:
            target[draw(st.text(min_size=1, max_size=8))] = draw(values)
        elif action == "remove":
            del target[draw(st.sampled_from(keys))]
        else:
            target[draw(st.sampled_from(keys))] = draw(values)
    return toml_document(document)


@FUZZ
@given(text=mutated_protocols())
def test_any_protocol_file_runs_or_is_refused_in_one_line(text):
    with scratch("protocol.toml", text) as (path, data):
        code, out, err = labctl_main(["calibrate", "--size", "4x4", "--protocol", str(path), "--data", str(data),
                                      "-q", "--json"])
        assert_clean(code, err, data)
        if code in (0, 1) and out:
            assert json.loads(out)["chip"] == "chip0"


chip_keys = st.sampled_from(["twin", "board", "smu", "temperature", "window_us", "timeout_s", "retries", "trace",
                             "limits", "bogus"])
limit_keys = st.sampled_from(["set_max_mv", "reset_max_mv", "width_max_ns", "read_voltage_max_v",
                              "smu_voltage_max_v", "smu_current_limit_max_a", "temperature_min_k",
                              "temperature_max_k", "nope"])
twin_tables = st.fixed_dictionaries({}, optional={"preset": st.sampled_from(["pcm", "rram", "flash", ""]),
                                                  "seed": scalars, "size": st.sampled_from(["4x4", "3x5", "x", "0x9",
                                                                                            "99999x2"])})


@st.composite
def configs(draw) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    chip = {"twin": draw(twin_tables)}
    for key in draw(st.lists(chip_keys, max_size=3)):
        chip[key] = draw(st.dictionaries(limit_keys, scalars, max_size=3) if key == "limits" else values)
    name = draw(st.sampled_from(["c1", "chip0", "a b", "ü"]))
    lines = [f"[chips.{json.dumps(name)}]"] + [f"{k} = {toml_value(v)}" for k, v in chip.items()]
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=configs())
def test_any_lab_toml_works_or_is_refused_in_one_line(text):
    with scratch("lab.toml", text) as (path, data):
        code, _, err = labctl_main(["rigs", "--config", str(path)])
        assert_clean(code, err)
        try:
            chips = list(tomllib.loads(text).get("chips", {}))
        except (tomllib.TOMLDecodeError, AttributeError):
            chips = []
        for chip in chips[:1]:
            code, _, err = labctl_main(["calibrate", chip, "--config", str(path), "--data", str(data), "-q"])
            assert_clean(code, err, data)


cell_values = st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 25)


@st.composite
def targets_files(draw, directory: Path) -> Path:
    suffix = draw(st.sampled_from([".npy", ".npy", ".csv", ".csv", ".parquet", ".parquet", ".txt"]))
    path = directory / f"targets{suffix}"
    if draw(st.integers(0, 4)) == 0:
        path.write_bytes(draw(st.binary(max_size=300)))
        return path
    shape = draw(st.sampled_from([(4, 4), (4, 4), (3, 4), (4, 5), (16,), (0, 4), (2, 2, 4)]))
    array = np.array(draw(st.lists(cell_values, min_size=math.prod(shape), max_size=math.prod(shape))),
                     dtype=float).reshape(shape)
    if suffix == ".parquet" and array.ndim == 2:
        import pandas as pd

        pd.DataFrame(array, columns=[f"c{i}" for i in range(array.shape[1])]).to_parquet(path)
    elif suffix in (".csv", ".txt") and array.ndim <= 2:
        np.savetxt(path, np.atleast_2d(array), delimiter=",")
    else:
        np.save(path, array)
        if path.suffix != ".npy":
            Path(str(path) + ".npy").rename(path)
    return path


@FUZZ
@given(data=st.data())
def test_any_targets_file_runs_or_is_refused_in_one_line(data):
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        path = data.draw(targets_files(Path(tmp)))
        option = data.draw(st.sampled_from(["--targets", "--weights"]))
        code, _, err = labctl_main(["calibrate", "--size", "4x4", option, str(path), "--data", str(store), "-q"])
        assert_clean(code, err, store)


WORDS = ["calibrate", "drift", "resume", "runs", "list", "show", "report", "compare", "export-model", "rigs",
         "doctor", "schedule", "add", "remove", "sim", "describe", "chip0", "nochip", "--size", "4x4", "0x4",
         "4x", "99999x99999", "--seed", "-1", "7", "nan", "--data", "--config", "/nonexistent/lab.toml",
         "--targets", "/dev/null", "--duration", "1h", "-5s", "1e999h", "forever", "--reads", "0", "3",
         "100000000", "--temperatures", "300,330", "300,,", "-4,1e9", "--at", "25:99", "--daily", "--via",
         "cron", "--dry-run", "--json", "-q", "--fresh", "--all", "--format", "json", "xml", "--preset", "rram",
         "--alpha", "2", "--", "-", "", "\x00", "ünï", "--protocol", "--weights", "--resume", "--max-change"]


@FUZZ
@given(args=st.lists(st.sampled_from(WORDS) | st.text(max_size=8), max_size=7))
def test_any_command_line_gives_an_answer_or_one_line(args):
    if args[:1] in (["calibrate"], ["drift"]) or "--resume" in args:
        args = [*args, "--size", "4x4"]  # whatever else it says, keep a run that starts small
    if "sim" in args and "serve" in args:
        return  # serves until stopped: not a one-shot command
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        args = [a if a != "--data" else f"--data={data}" for a in args]
        code, _, err = labctl_main([*args, f"--data={data}"] if args[:1] in (["calibrate"], ["drift"]) else args)
        assert_clean(code, err if code else "", data)


# ---- instrument replies ------------------------------------------------------------


replies = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"\n", b"nan\n", b"inf\n", b"-1e999\n", b"1" * 5000 + b"\n", b"0,\"No error\"\n",
                     b"#\n", b"#0\n", b"#9999999999\n", b"#210abc\n", b"#14\x00\x00\x00\x00\n", b"1,2\n",
                     b"1,2,3\n", b"1,-5,0\n", b"1,65536,65536\n", b"2,4,4\n", b"LABCTL,ACB-TWIN,1,0.1\n",
                     b"\xff\xfe\n", b"12,0.003,2047\n", b"-350,\"Queue overflow\"\n", b"0;1\n"]),
    st.builds(lambda n, extra: b"#" + str(len(str(n))).encode() + str(n).encode() + b"\x01" * extra + b"\n",
              st.integers(0, 10**6), st.integers(0, 64)),
)


class HostileWire(ReplyBuffer):
    """Answers every message with the next generated reply; then silence."""

    resource = "hostile://"

    def __init__(self, answers: list[bytes]) -> None:
        super().__init__()
        self._answers = list(answers)

    def write(self, data: bytes) -> None:
        if self._answers:
            self._buffer.extend(self._answers.pop(0))

    def close(self) -> None:
        pass


def driver_calls():
    import labctl_drivers as drivers

    def board(wire):
        return drivers.Board(wire)

    return {
        "identity": lambda w: board(w).identity(),
        "geometry": lambda w: board(w).geometry(),
        "adc": lambda w: board(w).adc(),
        "pulse_limits": lambda w: board(w).pulse_limits(),
        "clock_and_temperature": lambda w: board(w).clock_and_temperature(),
        "read_row": lambda w: board(w).read_row(0),
        "read_array": lambda w: board(w).read_array(),
        "mvm": lambda w: board(w).mvm(np.zeros(4, dtype=int)),
        "program_array": lambda w: board(w).program_array(np.full((4, 4), 500)),
        "smu current": lambda w: drivers.Keithley2450(w).measure_current(),
        "temperature": lambda w: drivers.LakeShore335(w).temperature_k,
    }


@FUZZ
@given(call=st.sampled_from(sorted(driver_calls())), answers=st.lists(replies, max_size=8))
def test_any_reply_gives_a_value_or_a_typed_driver_error(call, answers):
    from labctl_drivers.errors import DriverError

    try:
        result = driver_calls()[call](HostileWire(answers))
    except DriverError:
        return
    if isinstance(result, np.ndarray):
        assert result.dtype.kind in "iuf"
    elif isinstance(result, float):
        assert math.isfinite(result), f"{call} returned {result}"
    elif call == "geometry":
        assert result.rows > 0 and result.cols > 0 and result.arrays > 0


# ---- the interlock, end to end -----------------------------------------------------


@pytest.fixture
def wire_tap(monkeypatch):
    """Everything that reached the twin's chip, SMU and temperature controller."""
    import labctl_sims.chip
    import labctl_sims.smu
    import labctl_sims.temperature
    from labctl_sims.scpi import as_float

    seen: dict[str, list[float]] = {"set_mv": [], "reset_mv": [], "width_ns": [], "read_v": [], "probe_v": [],
                                    "smu_limit_a": [], "set_point_k": []}

    def tap(cls, name, record):
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            record(*args, **kwargs)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    def pulses(array, rows, amplitude_mv, width_ns):
        amplitude = np.asarray(amplitude_mv, dtype=float)
        seen["set_mv"].append(float(amplitude.max(initial=0)))
        seen["reset_mv"].append(float(-amplitude.min(initial=0)))
        seen["width_ns"].append(float(width_ns))

    tap(labctl_sims.chip.ChipModel, "program", pulses)
    tap(labctl_sims.chip.ChipModel, "read_codes", lambda array, rows, v_read, averages: seen["read_v"].append(v_read))
    tap(labctl_sims.chip.ChipModel, "mvm_codes", lambda array, codes, v_read, averages=1: seen["read_v"].append(v_read))
    tap(labctl_sims.chip.ChipModel, "probe_current_ua",
        lambda array, row, col, volts, integration_s: seen["probe_v"].append(abs(volts)))
    tap(labctl_sims.smu.SmuTwin, "_current_limit", lambda params: seen["smu_limit_a"].append(as_float(params[0], "")))
    tap(labctl_sims.temperature.TemperatureTwin, "_set_point", lambda params: seen["set_point_k"].append(
        as_float(params[-1], "")))
    return seen


def around(limit: float, integer: bool = False):
    """Mostly inside the limit, one time in eight beyond it (so that some protocols get to run)."""
    values = st.tuples(st.sampled_from([False] * 7 + [True]), st.floats(0.3, 1.0), st.floats(1.0, 1.6)).map(
        lambda t: limit * (t[2] if t[0] else t[1]))
    return values.map(round) if integer else values


@settings(max_examples=20 * CAMPAIGN, deadline=None, derandomize=CAMPAIGN == 1,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(set_max=around(1800, True), reset_max=around(2600, True), width=around(300, True), read_v=around(0.25),
       health_set=around(1800, True), health_reset=around(2600, True), smu_limit=around(5e-4),
       temperatures=st.lists(st.tuples(st.sampled_from([False] * 7 + [True]), st.floats(280, 340),
                                       st.floats(150, 450)).map(lambda t: t[2] if t[0] else t[1]),
                             min_size=1, max_size=2))
def test_no_generated_protocol_gets_past_the_limits(wire_tap, tmp_path, set_max, reset_max, width, read_v,
                                                    health_set, health_reset, smu_limit, temperatures):
    limits = {"set_max_mv": 1800, "reset_max_mv": 2600, "width_max_ns": 300, "read_voltage_max_v": 0.25,
              "smu_voltage_max_v": 0.25, "smu_current_limit_max_a": 5e-4, "temperature_min_k": 280,
              "temperature_max_k": 340}
    config = tmp_path / "lab.toml"
    config.write_text('[chips.guarded]\ntwin = { size = "4x4", seed = 2 }\n[chips.guarded.limits]\n'
                      + "".join(f"{k} = {v}\n" for k, v in limits.items()))
    protocol = json.loads(json.dumps(BUILTIN))
    protocol["steps"] = ["health", "readout", "write_verify", "drift"]
    protocol["write_verify"].update(set_max_mv=set_max, reset_max_mv=reset_max, width_ns=width,
                                    read_voltage=round(min(read_v, 0.3), 4),
                                    set_start_mv=min(700, set_max), reset_start_mv=min(1000, reset_max))
    protocol["health"].update(set_pulse_mv=health_set, reset_pulse_mv=health_reset, width_ns=max(width, 10))
    protocol["readout"].update(read_voltage=round(min(read_v, 0.3), 4), current_limit_a=smu_limit, repeats=1,
                               levels_us=[2.0, 20.0])
    protocol["drift"] = {"duration_s": 600, "reads": 3, "temperatures_k": temperatures, "reference_rows": 2,
                         "fit_cells": 16, "mvm_vectors": 4}
    path = tmp_path / "protocol.toml"
    path.write_text(toml_document(protocol))
    for seen in wire_tap.values():
        seen.clear()
    data = tmp_path / f"data-{len(list(tmp_path.iterdir()))}"
    code, _, err = labctl_main(["calibrate", "guarded", "--config", str(config), "--protocol", str(path),
                                "--data", str(data), "-q"])
    assert_clean(code, err, data)
    assert max(wire_tap["set_mv"], default=0) <= limits["set_max_mv"]
    assert max(wire_tap["reset_mv"], default=0) <= limits["reset_max_mv"]
    assert max(wire_tap["width_ns"], default=0) <= limits["width_max_ns"]
    assert max(wire_tap["read_v"], default=0) <= limits["read_voltage_max_v"]
    assert max(wire_tap["probe_v"], default=0) <= limits["smu_voltage_max_v"]
    assert max(wire_tap["smu_limit_a"], default=0) <= limits["smu_current_limit_max_a"]
    assert all(280 <= k <= 340 for k in wire_tap["set_point_k"])
