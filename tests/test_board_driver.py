"""The board driver: exact bytes on the wire (scripted), then against the twin."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import block

from labctl_drivers import (
    Board,
    InstrumentError,
    InstrumentTimeout,
    LimitError,
    PulseLimits,
    ReplyError,
    SafeOperatingArea,
)
from labctl_drivers.testing import expected_protocol
from labctl_drivers.transport import InProcessTransport

import labctl_sims as sims

# with a safe area wider than the board's own limits, the board's PROG:LIM? decides
WIDE = SafeOperatingArea(set_max_mv=32767, reset_max_mv=32767, width_max_ns=10000)

GEOM = (b"CHIP:GEOM?", b"1,2,3")
LIM = (b"PROG:LIM?", b"3000,4000,10000")
NO_ERROR = b'0,"No error"'

ATTEMPTS = 1 + Board.retries  # a query whose reply is damaged is sent this many times in all


def test_identity_and_geometry_bytes():
    with expected_protocol(Board, [(b"*IDN?", b"ACME,ACB-1,SN42,2.1"), GEOM]) as board:
        identity = board.identity()
        assert identity.model == "ACB-1" and not identity.is_twin
        assert board.geometry().shape == (2, 3)
        assert board.geometry().rows == 2  # cached: no second query


def test_settings_are_declarative_and_checked_before_the_wire():
    conversation = [
        (b"READ:VOLT 0.15;:SYST:ERR?", NO_ERROR),
        (b"READ:AVG?", b"8"),
        (b"PROG:WIDT 200;:SYST:ERR?", NO_ERROR),
    ]
    with expected_protocol(Board, conversation) as board:
        board.read_voltage = 0.15
        assert board.averaging == 8
        board.pulse_width_ns = 200
        with pytest.raises(LimitError, match="read_voltage"):
            board.read_voltage = 0.5  # nothing may be sent: the script would fail
        with pytest.raises(LimitError):
            board.averaging = 0


def test_read_row_and_array_are_one_block_each():
    row = block([1, -2, 3])
    conversation = [GEOM, (b"READ:ROW? 1", row), (b"READ:ARR?", block([1, 2, 3, 4, 5, 6]))]
    with expected_protocol(Board, conversation) as board:
        np.testing.assert_array_equal(board.read_row(1), [1, -2, 3])
        np.testing.assert_array_equal(board.read_array(), [[1, 2, 3], [4, 5, 6]])


def test_program_array_sends_block_and_error_check_in_one_message():
    amplitudes = np.array([[100, 0, -200], [0, 0, 2999]])
    message = b"PROG:ARR " + block(amplitudes) + b";:SYST:ERR?"
    with expected_protocol(Board, [GEOM, LIM, (message, NO_ERROR)], soa=WIDE) as board:
        board.program_array(amplitudes)


def test_program_row_and_cell_bytes():
    conversation = [
        GEOM, LIM,
        (b"PROG:ROW 1, " + block([5, 0, -5]) + b";:SYST:ERR?", NO_ERROR),
        (b"PROG:CELL 0,2,-1500;:SYST:ERR?", NO_ERROR),
    ]
    with expected_protocol(Board, conversation) as board:
        board.program_row(1, np.array([5, 0, -5]))
        board.program_cell(0, 2, -1500)


def test_instrument_errors_are_typed_with_the_instruments_message():
    conversation = [
        GEOM, LIM,
        (b"PROG:ARR " + block(np.zeros((2, 3))) + b";:SYST:ERR?", b'-222,"Data out of range; hot"'),
        (b"SYST:ERR?", b'-350,"Queue overflow"'),
        (b"SYST:ERR?", NO_ERROR),
    ]
    with expected_protocol(Board, conversation) as board:
        with pytest.raises(InstrumentError) as caught:
            board.program_array(np.zeros((2, 3)))
        assert caught.value.code == -222
        assert "hot" in str(caught.value) and "PROG:ARR" in str(caught.value)


@pytest.mark.parametrize(
    "amplitudes, message, queries",
    [
        (np.array([[0, 0, 3001], [0, 0, 0]]), "safe limits", [GEOM, LIM]),
        (np.array([[0, 0, 0], [0, -4001, 0]]), "safe limits", [GEOM, LIM]),
        (np.zeros((3, 3)), "shape", [GEOM]),
        (np.array([[0.5, 0, 0], [0, 0, 0]]), "whole millivolts", [GEOM]),
    ],
)
def test_unsafe_or_malformed_pulses_never_reach_the_wire(amplitudes, message, queries):
    with expected_protocol(Board, queries, soa=WIDE) as board:
        with pytest.raises(LimitError, match=message):
            board.program_array(amplitudes)


def test_configured_safe_area_tightens_the_boards_limits():
    soa = SafeOperatingArea(set_max_mv=2000, reset_max_mv=2500, width_max_ns=500)
    with expected_protocol(Board, [LIM, GEOM], soa=soa) as board:
        assert board.pulse_limits() == PulseLimits(2000, 2500, 500)
        with pytest.raises(LimitError):
            board.program_array(np.array([[0, 0, 2001], [0, 0, 0]]))
        with pytest.raises(LimitError):
            board.set_pulse_width(600)


@pytest.mark.parametrize(
    "reply, sent",
    [
        (b"1,2", ATTEMPTS),  # too few fields: damaged on the way, asked again (retries times)
        (b"1,two,3", ATTEMPTS),  # not numeric: the same
        (b"0,0,0", 1),  # well formed but nonsensical: the instrument means it, no retry
    ],
)
def test_malformed_replies_raise_reply_errors(reply, sent):
    with expected_protocol(Board, [(b"CHIP:GEOM?", reply)] * sent) as board:
        with pytest.raises(ReplyError):
            board.geometry()


def test_wrong_length_block_is_a_reply_error():
    with expected_protocol(Board, [GEOM, *[(b"READ:ROW? 0", block([1, 2]))] * ATTEMPTS]) as board:
        with pytest.raises(ReplyError, match="expected 6"):
            board.read_row(0)


def test_not_a_block_is_a_reply_error():
    with expected_protocol(Board, [GEOM, *[(b"READ:ARR?", b"12,13")] * ATTEMPTS]) as board:
        with pytest.raises(ReplyError, match="block"):
            board.read_array()


def test_query_without_reply_surfaces_the_queued_error():
    conversation = [
        (b"READ:CELL? 0,0", None),
        (b"SYST:ERR?", b'-222,"Data out of range; row"'),
        (b"SYST:ERR?", NO_ERROR),
    ]
    with expected_protocol(Board, conversation) as board:
        with pytest.raises(InstrumentError, match="row"):
            board.query("READ:CELL? 0,0")


def test_query_without_reply_and_empty_queue_times_out():
    conversation = [(b"READ:AVG?", None), (b"SYST:ERR?", NO_ERROR), *[(b"READ:AVG?", None)] * Board.retries]
    with expected_protocol(Board, conversation) as board:
        with pytest.raises(InstrumentTimeout):
            board.query("READ:AVG?")


# ---- against the twin, in process ---------------------------------------------------


def test_driver_against_the_twin(board, chip):
    identity = board.identity()
    assert identity.is_twin and identity.maker == "LABCTL"
    assert board.geometry().shape == (16, 12)
    assert board.adc().bits == 12
    board.averaging = 16
    board.read_voltage = 0.2
    array = board.read_array()
    assert array.shape == (16, 12)
    assert abs(int(board.read_cell(3, 3)) - int(array[3, 3])) < 40
    before = chip.ground_truth().programmed_us
    board.program_row(4, np.full(12, 2000))
    board.program_array(np.where(np.arange(16)[:, None] == 5, -2500, 0) * np.ones((16, 12), int))
    after = chip.ground_truth().programmed_us
    moved = (after != before)[0]
    assert set(np.flatnonzero(moved.any(axis=1))) <= {4, 5}
    seconds, kelvin = board.clock_and_temperature()
    assert seconds > 0 and 299 < kelvin < 301


def test_twin_errors_arrive_as_instrument_errors(board):
    with pytest.raises(InstrumentError) as caught:
        board.query("READ:CELL? 99,0")
    assert caught.value.code == -222 and "row 99" in caught.value.message
    with pytest.raises(InstrumentError, match="-113"):
        board.query("NOPE?")


def test_snapshot_names_every_setting(board):
    board.averaging = 4
    snap = board.snapshot()
    assert snap["averaging"] == 4 and snap["read_voltage"] == 0.2
    assert snap["idn"].startswith("LABCTL,ACB-TWIN")
    assert snap["pulse_limits"]["set_max_mv"] == 2500  # the default safe area is tighter than the board
    assert snap["safe_operating_area"]["reset_max_mv"] == 3500
    assert snap["resource"] == "twin://test"


def test_a_lost_reply_is_asked_again_and_succeeds():
    conversation = [(b"READ:AVG?", None), (b"SYST:ERR?", NO_ERROR), (b"READ:AVG?", b"8")]
    with expected_protocol(Board, conversation) as board:
        assert board.averaging == 8


def test_a_damaged_reply_is_asked_again_and_succeeds():
    conversation = [(b"READ:VOLT?", b"0.\xff2"), (b"READ:VOLT?", b"0.2")]
    with expected_protocol(Board, conversation) as board:
        assert board.read_voltage == 0.2


def test_a_lost_acknowledgement_is_never_answered_by_sending_the_pulse_again():
    amplitudes = np.zeros((2, 3), dtype=int)
    message = b"PROG:ARR " + block(amplitudes) + b";:SYST:ERR?"
    conversation = [GEOM, LIM, (message, None), (b"SYST:ERR?", NO_ERROR)]
    with expected_protocol(Board, conversation) as board:
        board.program_array(amplitudes)  # the script fails on any second PROG:ARR


def test_errors_name_the_resource_and_the_last_command():
    with expected_protocol(Board, [(b"CHIP:GEOM?", b"x")] * ATTEMPTS) as board:
        with pytest.raises(ReplyError) as caught:
            board.geometry()
    assert "scripted://" in str(caught.value) and "CHIP:GEOM?" in str(caught.value)


# ---- capabilities and the sparse commands ---------------------------------------------------

CAP = (b"CHIP:CAP?", b"MVM,PROBE,LIST")


def test_capabilities_are_asked_once_and_a_board_without_them_has_none():
    with expected_protocol(Board, [CAP]) as board:
        assert board.capabilities() == {"MVM", "PROBE", "LIST"}
        assert "LIST" in board.capabilities()  # cached: no second query
    older = [(b"CHIP:CAP?", None), (b"SYST:ERR?", b'-113,"Undefined header"'), (b"SYST:ERR?", NO_ERROR)]
    with expected_protocol(Board, older) as board:
        assert board.capabilities() == frozenset()


def test_read_rows_is_one_block_out_and_one_back():
    rows = block([4, 5, 6, 1, 2, 3])
    conversation = [GEOM, CAP, (b"READ:ROWS? " + block([1, 0]), rows)]
    with expected_protocol(Board, conversation) as board:
        np.testing.assert_array_equal(board.read_rows(np.array([1, 0])), [[4, 5, 6], [1, 2, 3]])


def test_program_list_sends_row_col_mv_triples_with_the_error_check():
    triples = block([[0, 2, 900], [1, 0, -1200]])
    conversation = [GEOM, LIM, CAP, (b"PROG:LIST " + triples + b";:SYST:ERR?", NO_ERROR)]
    with expected_protocol(Board, conversation, soa=WIDE) as board:
        board.program_list(np.array([0, 1]), np.array([2, 0]), np.array([900, -1200]))


@pytest.mark.parametrize("rows, cols, amplitudes, message", [
    ([0, 0], [1, 1], [900, 900], "listed twice"),
    ([2], [0], [900], "outside"),
    ([0], [3], [900], "outside"),
    ([0], [0], [3001], "beyond the safe limits"),
    ([], [], [], "non-zero length"),
])
def test_program_list_is_refused_before_the_wire(rows, cols, amplitudes, message):
    with expected_protocol(Board, [GEOM, LIM], soa=WIDE) as board:
        with pytest.raises(LimitError, match=message):
            board.program_list(np.array(rows, dtype=int), np.array(cols, dtype=int), np.array(amplitudes, dtype=int))


def test_sparse_commands_need_a_board_that_lists_them():
    with expected_protocol(Board, [GEOM, (b"CHIP:CAP?", b"MVM,PROBE")]) as board:
        with pytest.raises(LimitError, match="lists LIST"):
            board.read_rows(np.array([0]))


@pytest.mark.parametrize("rows, message", [([0, 0], "listed twice"), ([2], "outside"), ([], "non-empty")])
def test_read_rows_is_refused_before_the_wire(rows, message):
    with expected_protocol(Board, [GEOM]) as board:
        with pytest.raises(LimitError, match=message):
            board.read_rows(np.array(rows, dtype=int))


def test_mvm_gain_is_a_power_of_two_up_to_the_rows():
    with expected_protocol(Board, [(b"CHIP:GEOM?", b"1,64,64"), (b"MVM:GAIN 16;:SYST:ERR?", NO_ERROR)]) as board:
        board.set_mvm_gain(16)
        for bad in (3, 0, 128):
            with pytest.raises(LimitError, match="power of two"):
                board.set_mvm_gain(bad)


def test_sparse_round_trip_on_the_twin(quiet_preset):
    """Through the real handler: the listed cells move, the others do not, and READ:ROWS?
    gives the rows READ:ARR? gives (on a chip without read noise, so the rows are comparable)."""
    chip = sims.ChipModel(preset=quiet_preset, seed=7, rows=16, cols=12)
    board = Board(InProcessTransport(sims.BoardTwin(chip).feed, resource="twin://test"))
    before = chip.ground_truth().programmed_us.copy()
    board.program_list(np.array([2, 2, 9]), np.array([1, 5, 0]), np.array([1800, 1800, -2600]))
    after = chip.ground_truth().programmed_us
    moved = {tuple(cell) for cell in np.argwhere(after[0] != before[0])}
    assert moved and moved <= {(2, 1), (2, 5), (9, 0)}
    board.averaging = 256
    whole = board.read_array().astype(int)
    difference = np.abs(board.read_rows(np.array([9, 2])).astype(int) - whole[[9, 2]])
    assert difference.max() <= 1  # two reads of the same rows
