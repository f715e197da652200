"""The twin's SCPI engine: framing, header forms, joined commands, error queue."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import block

from labctl_sims.scpi import IncompleteMessage, find_message_end


def test_message_end_skips_blocks_holding_newlines_and_semicolons():
    payload = b"\n;\n;"
    message = b"PROG:ARR #14" + payload + b"\nNEXT\n"
    assert find_message_end(message) == len(b"PROG:ARR #14" + payload + b"\n")


@pytest.mark.parametrize("partial", [b"*IDN?", b"PROG:ARR #", b"PROG:ARR #2", b"PROG:ARR #210abc"])
def test_message_end_waits_for_the_rest(partial):
    with pytest.raises(IncompleteMessage):
        find_message_end(partial)


def test_bytes_may_arrive_in_any_pieces(twin):
    message = b"*IDN?\nREAD:VOLT?\n"
    out = b"".join(twin.feed(message[i : i + 1]) for i in range(len(message)))
    assert out == b"LABCTL,ACB-TWIN,TWIN-0001,0.1.0\n0.2\n"


@pytest.mark.parametrize(
    "command",
    [b"READ:VOLT?", b"read:volt?", b"READ:VOLTAGE?", b":READ:VOLTage?", b"Read:Voltage?"],
)
def test_short_and_long_header_forms_any_case(twin, command):
    assert twin.feed(command + b"\n") == b"0.2\n"


def test_truncated_long_form_is_not_a_header(twin):
    assert twin.feed(b"READ:VOLTA?\n") == b""
    assert twin.feed(b"SYST:ERR?\n").startswith(b"-113,")


def test_joined_commands_reply_in_one_line_and_continue_the_subsystem(twin):
    assert twin.feed(b"READ:VOLT 0.1;AVG 4;:READ:VOLT?;AVG?;\n") == b"0.1;4\n"


def test_crlf_terminator_is_accepted(twin):
    assert twin.feed(b"READ:AVG 3\r\nREAD:AVG?\r\n") == b"3\n"


def test_quoted_parameters(twin):
    twin.feed(b"ROUT:PROB 'OFF'\n")
    assert twin.feed(b'ROUT:PROB 2,3;ROUT:PROB?\n') == b"2,3\n"
    assert twin.feed(b'ROUT:PROB "OFF";ROUT:PROB?\n') == b"OFF\n"


def test_error_queue_is_fifo_and_reports_no_error_when_empty(twin):
    twin.feed(b"BOGUS\nREAD:VOLT 9\nREAD:AVG\n")
    replies = [twin.feed(b"SYST:ERR?\n") for _ in range(4)]
    assert replies[0].startswith(b"-113,")
    assert replies[1].startswith(b"-222,")
    assert replies[2].startswith(b"-109,")
    assert replies[3] == b'0,"No error"\n'


def test_error_queue_overflow(twin):
    twin.feed(b"BOGUS\n" * 40)
    codes = [int(twin.feed(b"SYST:ERR?\n").split(b",")[0]) for _ in range(33)]
    assert codes[:31] == [-113] * 31
    assert codes[31] == -350
    assert codes[32] == 0


def test_cls_clears_the_queue(twin):
    twin.feed(b"BOGUS\n*CLS\n")
    assert twin.feed(b"SYST:ERR?\n") == b'0,"No error"\n'


def test_a_failing_command_in_a_joined_message_does_not_stop_the_others(twin):
    assert twin.feed(b"READ:AVG 999;:READ:AVG 5;:READ:AVG?\n") == b"5\n"
    assert twin.feed(b"SYST:ERR?\n").startswith(b"-222,")


def test_block_with_trailing_whitespace_bytes_is_kept_whole(twin, chip):
    # 0x0D0A in little endian is b"\n\r": a block ending in whitespace bytes
    amplitudes = np.zeros(chip.cols, dtype="<i2")
    amplitudes[-1] = 0x0D0A  # 3338 mV, beyond the board's SET limit: must be refused whole
    before = chip.ground_truth().programmed_us
    twin.feed(b"PROG:ROW 0," + block(amplitudes) + b"\n")
    assert twin.feed(b"SYST:ERR?\n").startswith(b"-222,")
    np.testing.assert_array_equal(chip.ground_truth().programmed_us, before)
