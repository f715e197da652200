"""Property: whatever a caller asks, nothing outside the chip's safe operating area reaches the wire."""

from __future__ import annotations

import re

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labctl_drivers import Board, InProcessTransport, Keithley2450, LakeShore335, LimitError, SafeOperatingArea
from labctl_drivers.errors import DriverError
from labctl_sims.server import TwinRig

ROWS, COLS = 4, 5


class WireWatch(InProcessTransport):
    """Passes bytes to the twin and remembers every value that left for it."""

    def __init__(self, handler):
        super().__init__(handler)
        self.amplitudes: list[int] = []
        self.widths: list[float] = []
        self.read_volts: list[float] = []
        self.smu_volts: list[float] = []
        self.smu_limits: list[float] = []
        self.set_points: list[float] = []

    def write(self, data: bytes) -> None:
        for command in re.split(rb";:?", data.rstrip(b"\n")):
            self._watch(command)
        super().write(data)

    def _watch(self, command: bytes) -> None:
        head, _, rest = command.partition(b" ")
        head = head.upper().lstrip(b":")
        if head in (b"PROG:ARR", b"PROG:ROW") and b"#" in rest:
            block = rest[rest.index(b"#"):]
            digits = block[1] - 0x30
            length = int(block[2 : 2 + digits])
            payload = block[2 + digits : 2 + digits + length]
            self.amplitudes += np.frombuffer(payload, dtype="<i2").astype(int).tolist()
        elif head == b"PROG:CELL":
            self.amplitudes.append(int(rest.split(b",")[2]))
        elif head == b"PROG:WIDT":
            self.widths.append(float(rest))
        elif head == b"READ:VOLT":
            self.read_volts.append(float(rest))
        elif head == b"SOUR:VOLT":
            self.smu_volts.append(float(rest))
        elif head == b"SOUR:VOLT:ILIM":
            self.smu_limits.append(float(rest))
        elif head == b"SETP":
            self.set_points.append(float(rest.split(b",")[1]))


areas = st.builds(
    SafeOperatingArea,
    set_max_mv=st.integers(100, 3500),
    reset_max_mv=st.integers(100, 4500),
    width_max_ns=st.integers(10, 10000),
    read_voltage_max_v=st.floats(0.01, 0.3),
    smu_voltage_max_v=st.floats(0.01, 5.0),
    smu_current_limit_max_a=st.floats(1e-8, 1e-2),
    temperature_min_k=st.floats(200.0, 300.0),
    temperature_max_k=st.floats(301.0, 450.0),
)
amplitudes = st.one_of(
    arrays(np.int64, (ROWS, COLS), elements=st.integers(-40000, 40000)),
    arrays(np.float64, (ROWS, COLS), elements=st.one_of(st.floats(-5000, 5000), st.sampled_from([np.nan, np.inf, -np.inf]))),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("array"), amplitudes),
        st.tuples(st.just("row"), st.integers(-2, ROWS + 2), amplitudes),
        st.tuples(st.just("cell"), st.integers(-1, ROWS), st.integers(-1, COLS), st.integers(-40000, 40000)),
        st.tuples(st.just("width"), st.integers(-10, 20000)),
        st.tuples(st.just("read_volt"), st.one_of(st.floats(-1, 1), st.just(np.nan))),
        st.tuples(st.just("smu_volt"), st.one_of(st.floats(-20, 20), st.just(np.nan))),
        st.tuples(st.just("smu_limit"), st.one_of(st.floats(-1, 2), st.just(np.nan))),
        st.tuples(st.just("set_point"), st.one_of(st.floats(0, 800), st.just(np.nan))),
    ),
    min_size=1,
    max_size=12,
)


def attempt(board: Board, smu: Keithley2450, tc: LakeShore335, op: tuple) -> None:
    kind, *args = op
    try:
        if kind == "array":
            board.program_array(args[0])
        elif kind == "row":
            board.program_row(args[0], args[1][0])
        elif kind == "cell":
            board.program_cell(*args)
        elif kind == "width":
            board.set_pulse_width(args[0])
        elif kind == "read_volt":
            board.read_voltage = args[0]
        elif kind == "smu_volt":
            smu.source_voltage = args[0]
        elif kind == "smu_limit":
            smu.current_limit = args[0]
        else:
            tc.set_point_k = args[0]
    except LimitError:
        pass  # refused, as it should be when out of the area
    except DriverError:
        pass  # an in-area value the instrument itself rejects is not the interlock's business


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(soa=areas, ops=operations)
# found by this test: "%g" rounded 301.015625 K up to 301.016 K on the wire, past the limit
@example(soa=SafeOperatingArea(temperature_max_k=301.015625), ops=[("set_point", 301.015625)])
def test_nothing_outside_the_safe_operating_area_reaches_the_wire(soa, ops):
    rig = TwinRig.build(rows=ROWS, cols=COLS)
    watches = {name: WireWatch(device.feed) for name, device in rig.devices.items()}
    board = Board(watches["board"], soa=soa)
    smu = Keithley2450(watches["smu"], soa=soa)
    tc = LakeShore335(watches["temperature"], soa=soa)
    for op in ops:
        attempt(board, smu, tc, op)
    sent_board, sent_smu, sent_tc = watches["board"], watches["smu"], watches["temperature"]
    assert all(-soa.reset_max_mv <= a <= soa.set_max_mv for a in sent_board.amplitudes)
    assert all(10 <= w <= soa.width_max_ns for w in sent_board.widths)
    assert all(0 < v <= soa.read_voltage_max_v for v in sent_board.read_volts)
    assert all(abs(v) <= soa.smu_voltage_max_v for v in sent_smu.smu_volts)
    assert all(0 < a <= soa.smu_current_limit_max_a for a in sent_smu.smu_limits)
    assert all(soa.temperature_min_k <= k <= soa.temperature_max_k for k in sent_tc.set_points)


def test_the_watch_sees_what_is_sent():
    """The property above can fail: an unguarded write is caught by the watch."""
    rig = TwinRig.build(rows=ROWS, cols=COLS)
    watch = WireWatch(rig.board.feed)
    Board(watch).write("PROG:CELL 0,0,2999")
    watch_smu = WireWatch(rig.smu.feed)
    Keithley2450(watch_smu).write(":SOUR:VOLT 9")
    assert watch.amplitudes == [2999] and watch_smu.smu_volts == [9.0]
