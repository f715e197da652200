"""Every board command of PROTOCOL.md, sent as bytes to the twin's handler."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import block, parse_block

import labctl_sims as sims


def error(twin) -> int:
    return int(twin.feed(b"SYST:ERR?\n").split(b",")[0])


def test_identity_geometry_and_seed(twin, chip):
    assert twin.feed(b"*IDN?\n") == b"LABCTL,ACB-TWIN,TWIN-0001,0.1.0\n"
    assert twin.feed(b"CHIP:GEOM?\n") == b"1,16,12\n"
    assert twin.feed(b"SIM:SEED?\n") == b"7\n"
    assert twin.feed(b"*OPC?\n") == b"1\n"


def test_array_selection_is_range_checked(twin):
    assert twin.feed(b"CHIP:ARR 0;CHIP:ARR?\n") == b"0\n"
    twin.feed(b"CHIP:ARR 1\n")
    assert error(twin) == -222


def test_temperature_and_clock(twin):
    kelvin = float(twin.feed(b"SENS:TEMP?\n"))
    assert 299.0 < kelvin < 301.0
    t0 = float(twin.feed(b"SYST:TIME?\n"))
    twin.feed(b"READ:ARR?\n")
    t1 = float(twin.feed(b"SYST:TIME?\n"))
    assert t1 > t0  # reading takes modelled time
    twin.feed(b"SIM:CLOCK:ADV 3600\n")
    assert float(twin.feed(b"SYST:TIME?\n")) == pytest.approx(t1 + 3600)


def test_read_settings_and_their_limits(twin):
    twin.feed(b"READ:VOLT 0.3;AVG 256\n")
    assert twin.feed(b"READ:VOLT?;AVG?\n") == b"0.3;256\n"
    for bad in (b"READ:VOLT 0", b"READ:VOLT 0.31", b"READ:AVG 0", b"READ:AVG 257"):
        twin.feed(bad + b"\n")
        assert error(twin) == -222, bad
    twin.feed(b"READ:VOLT abc\n")
    assert error(twin) == -224
    assert twin.feed(b"READ:VOLT?;AVG?\n") == b"0.3;256\n"


def test_rst_resets_settings_but_never_conductances(twin, chip):
    twin.feed(b"READ:VOLT 0.1;AVG 7;:PROG:WIDT 500;:ROUT:PROB 1,1\n")
    before = chip.ground_truth().programmed_us
    twin.feed(b"*RST\n")
    assert twin.feed(b"READ:VOLT?;AVG?;:PROG:WIDT?;:ROUT:PROB?\n") == b"0.2;1;100;OFF\n"
    np.testing.assert_array_equal(chip.ground_truth().programmed_us, before)


def test_read_cell_row_array_agree_with_the_adc_model(quiet_preset):
    chip = sims.ChipModel(preset=quiet_preset, seed=7, rows=16, cols=12)
    twin = sims.BoardTwin(chip)
    twin.feed(b"READ:AVG 256\n")
    truth = chip.ground_truth()
    array = parse_block(twin.feed(b"READ:ARR?\n")).reshape(16, 12)
    expected = truth.adc_gain[0] * 0.2 * truth.conductance_us[0] / chip.lsb_ua + truth.adc_offset_lsb[0]
    assert np.abs(array - expected).max() < 3 + 0.02 * np.abs(expected).max()
    row = parse_block(twin.feed(b"READ:ROW? 5\n"))
    assert row.shape == (12,)
    assert np.abs(row - expected[5]).max() < 3 + 0.02 * np.abs(expected).max()
    cell = int(twin.feed(b"READ:CELL? 5,7\n"))
    assert abs(cell - expected[5, 7]) < 3 + 0.02 * abs(expected[5, 7])


def test_read_adc_describes_the_converter(twin):
    bits, full_scale = twin.feed(b"READ:ADC?\n").decode().split(",")
    assert int(bits) == 12 and float(full_scale) == 8.0


@pytest.mark.parametrize("command", [b"READ:CELL? 16,0", b"READ:CELL? 0,12", b"READ:ROW? -1", b"READ:CELL? 1"])
def test_reads_outside_the_array_fail_without_reply(twin, command):
    assert twin.feed(command + b"\n") == b""
    assert error(twin) in (-222, -109)


def test_program_cell_set_then_reset(twin, chip):
    g0 = chip.ground_truth().conductance_us[0, 3, 4]
    twin.feed(b"PROG:CELL 3,4,2000\n")
    g1 = chip.ground_truth().conductance_us[0, 3, 4]
    twin.feed(b"PROG:CELL 3,4,-2500\n")
    g2 = chip.ground_truth().conductance_us[0, 3, 4]
    assert error(twin) == 0
    if not (chip.cells.stuck[0, 3, 4]):
        assert g1 > g0 and g2 < g1


def test_program_row_and_array_apply_one_pulse_per_cell(twin, chip):
    stuck = chip.cells.stuck[0]
    before = chip.ground_truth().programmed_us[0]
    amplitudes = np.zeros(12, dtype=np.int16)
    amplitudes[::2] = 2200
    twin.feed(b"PROG:ROW 2," + block(amplitudes) + b"\n")
    after = chip.ground_truth().programmed_us[0]
    changed = after != before
    assert error(twin) == 0
    assert not changed[np.arange(16) != 2].any()
    assert changed[2, ::2][~stuck[2, ::2]].all()
    assert not changed[2, 1::2].any()

    full = np.full((16, 12), 2200, dtype=np.int16)
    twin.feed(b"PROG:ARR " + block(full) + b"\n")
    assert error(twin) == 0
    final = chip.ground_truth().programmed_us[0]
    assert (final[~stuck] > after[~stuck] - 0.5).all()


@pytest.mark.parametrize(
    "message, code",
    [
        (b"PROG:ROW 0," + block(np.zeros(11)), -224),  # wrong length
        (b"PROG:ARR " + block(np.zeros(16 * 12 + 1)), -224),  # one amplitude too many
        (b"PROG:LIST " + block(np.zeros(3 * 16 * 12 + 1)), -223),  # larger than any block the board takes
        (b"PROG:ARR " + block(np.full(16 * 12, 3001)), -222),  # beyond SET limit
        (b"PROG:ARR " + block(np.full(16 * 12, -4001)), -222),  # beyond RESET limit
        (b"PROG:CELL 0,0,5000", -222),
        (b"PROG:ROW 0,1,2,3", -100),
        (b"PROG:ROW 0,17", -224),  # not a block
        (b"PROG:WIDT 5", -222),
        (b"PROG:WIDT 20000", -222),
    ],
)
def test_rejected_programming_changes_nothing(twin, chip, message, code):
    before = chip.ground_truth().programmed_us
    twin.feed(message + b"\n")
    assert error(twin) == code
    np.testing.assert_array_equal(chip.ground_truth().programmed_us, before)


def test_program_limits_and_width(twin):
    assert twin.feed(b"PROG:LIM?\n") == b"3000,4000,10000\n"
    assert twin.feed(b"PROG:WIDT 250;WIDT?\n") == b"250\n"


def test_twin_is_reproducible_from_preset_seed_and_geometry():
    def replies(seed):
        t = sims.BoardTwin(sims.ChipModel(seed=seed, rows=8, cols=8))
        return t.feed(b"PROG:ARR " + block(np.full(64, 1800)) + b"\nREAD:ARR?\n")

    assert replies(3) == replies(3)
    assert replies(3) != replies(4)


# ---- CHIP:CAP?, READ:ROWS?, PROG:LIST, MVM:GAIN (PROTOCOL.md) -------------------------------


def test_capabilities_list_what_the_board_does_beyond_reading_and_programming(twin):
    assert twin.feed(b"CHIP:CAP?\n") == b"MVM,PROBE,LIST\n"


def test_read_rows_returns_the_listed_rows_in_order(quiet_preset):
    chip = sims.ChipModel(preset=quiet_preset, seed=7, rows=16, cols=12)
    twin = sims.BoardTwin(chip)
    twin.feed(b"READ:AVG 256\n")
    whole = parse_block(twin.feed(b"READ:ARR?\n")).reshape(chip.rows, chip.cols).astype(int)
    picked = parse_block(twin.feed(b"READ:ROWS? " + block([9, 2, 14]) + b"\n")).reshape(3, chip.cols).astype(int)
    assert np.abs(picked - whole[[9, 2, 14]]).max() <= 1  # the same rows (a chip without read noise)
    assert error(twin) == 0


def test_read_rows_costs_the_time_of_the_rows_it_reads(twin):
    t0 = float(twin.feed(b"SYST:TIME?\n"))
    twin.feed(b"READ:ROWS? " + block([1, 2]) + b"\n")
    t1 = float(twin.feed(b"SYST:TIME?\n"))
    twin.feed(b"READ:ARR?\n")
    t2 = float(twin.feed(b"SYST:TIME?\n"))
    assert 0 < t1 - t0 < (t2 - t1) / 4  # 2 rows of 16


@pytest.mark.parametrize("rows, code", [([1, 1], -224), ([16], -222), ([-1], -222)])
def test_read_rows_refuses_repeated_or_missing_rows(twin, rows, code):
    assert twin.feed(b"READ:ROWS? " + block(rows) + b"\n") == b""
    assert error(twin) == code


def test_program_list_pulses_only_the_listed_cells(twin, chip):
    before = chip.ground_truth().programmed_us.copy()
    twin.feed(b"PROG:LIST " + block([[3, 4, 1500], [11, 0, -2500], [3, 7, 1800]]) + b"\n")
    assert error(twin) == 0
    after = chip.ground_truth().programmed_us
    changed = np.argwhere(after[0] != before[0])
    assert {tuple(cell) for cell in changed} <= {(3, 4), (11, 0), (3, 7)}
    assert len(changed) >= 2  # pulses this strong switch a working cell


def test_program_list_costs_the_rows_it_touches(twin):
    t0 = float(twin.feed(b"SYST:TIME?\n"))
    twin.feed(b"PROG:LIST " + block([[3, 4, 900], [3, 5, 900], [8, 1, 900]]) + b"\n")
    t1 = float(twin.feed(b"SYST:TIME?\n"))
    twin.feed(b"PROG:ARR " + block(np.full(16 * 12, 900)) + b"\n")
    t2 = float(twin.feed(b"SYST:TIME?\n"))
    assert 0 < t1 - t0 < (t2 - t1) / 4  # two rows of sixteen (and 18 bytes on the wire, not 384)


@pytest.mark.parametrize("triples, code", [
    ([[3, 4, 900], [3, 4, 900]], -224),   # a cell twice
    ([[16, 0, 900]], -222),               # outside the array
    ([[0, 12, 900]], -222),
    ([[0, 0, 3001]], -222),               # beyond the board's SET limit
    ([[0, 0, -4001]], -222),
])
def test_program_list_refuses_bad_lists_and_leaves_the_chip_alone(twin, chip, triples, code):
    before = chip.ground_truth().programmed_us.copy()
    twin.feed(b"PROG:LIST " + block(triples) + b"\n")
    assert error(twin) == code
    np.testing.assert_array_equal(chip.ground_truth().programmed_us, before)


def test_program_list_block_must_hold_whole_triples(twin):
    twin.feed(b"PROG:LIST " + block([1, 2]) + b"\n")
    assert error(twin) == -224


def test_mvm_gain_scales_the_output_range_and_clips(twin, chip):
    assert twin.feed(b"MVM:GAIN?\n") == b"1\n"
    twin.feed(b"READ:AVG 64\n")
    inputs = block(np.full(chip.rows, 60))
    offset = parse_block(twin.feed(b"MVM? " + block(np.zeros(chip.rows)) + b"\n")).astype(float)
    one = parse_block(twin.feed(b"MVM? " + inputs + b"\n")).astype(float) - offset
    twin.feed(b"MVM:GAIN 4\n")
    four = parse_block(twin.feed(b"MVM? " + inputs + b"\n")).astype(float)
    four -= parse_block(twin.feed(b"MVM? " + block(np.zeros(chip.rows)) + b"\n")).astype(float)
    assert np.median(four / np.maximum(one, 1)) == pytest.approx(4.0, rel=0.1)
    twin.feed(b"MVM:GAIN 16\n")
    top = 2 ** (chip.adc_bits - 1)
    full = parse_block(twin.feed(b"MVM? " + block(np.full(chip.rows, 127)) + b"\n"))
    assert full.max() <= top - 1
    for bad in (b"3", b"0", b"32"):
        twin.feed(b"MVM:GAIN " + bad + b"\n")
        assert error(twin) == -222, bad
    assert twin.feed(b"MVM:GAIN?\n") == b"16\n"
