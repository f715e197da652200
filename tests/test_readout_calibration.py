"""Read-out calibration recovers the twin's hidden per-column ADC gain and offset."""

from __future__ import annotations

import numpy as np
import pytest

from labctl_calibration.readout_calibration import (
    ReadoutCalibrationParams,
    calibrate_readout,
    fit_columns,
    fit_columns_weighted,
    shrink_split_half,
    shrink_to_pool,
)
from labctl_calibration.write_verify import WriteVerifyParams
from labctl_drivers import Board, InProcessTransport, Keithley2450
from labctl_sims.server import TwinRig


def calibrated(preset: str, seed: int, size: int, wire_ohm: float | None = 0.0, **changes: float):
    """Read-out calibration on a twin; by default with the wires' IR drop off, so the figures
    measure how well the algorithm finds the ADC's trims (IR drop is its own test below)."""
    overrides = changes if wire_ohm is None else {"wire_ohm": wire_ohm, **changes}
    rig = TwinRig.build(preset, rows=size, cols=size, seed=seed, overrides=overrides or None)
    board = Board(InProcessTransport(rig.board.feed))
    smu = Keithley2450(InProcessTransport(rig.smu.feed))
    calibration = calibrate_readout(board, smu, ReadoutCalibrationParams(), WriteVerifyParams())
    assert smu.output_enabled is False and board.query("ROUT:PROB?") == "OFF"  # left safe
    truth = rig.chip.ground_truth()
    gain_error = np.sqrt(np.mean((calibration.gain / truth.adc_gain[0] - 1) ** 2))
    offset_error = np.sqrt(np.mean((calibration.offset_lsb - truth.adc_offset_lsb[0]) ** 2))
    nominal = (np.sqrt(np.mean((1 / truth.adc_gain[0] - 1) ** 2)), np.sqrt(np.mean(truth.adc_offset_lsb[0] ** 2)))
    return calibration, (gain_error, offset_error), nominal, truth


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("inl_lsb,offset_within", [(0.0, 0.5), (1.0, 1.0)])
def test_without_read_noise_gain_within_0_1_percent_and_offset_within_rounding_and_inl(
        quiet_preset, seed, inl_lsb, offset_within):
    """Half an LSB of rounding; with the ADC's ±1 LSB INL (the preset's), a straight line's
    intercept moves by up to that much more, which no linear read-out calibration removes."""
    calibration, (gain_error, offset_error), _, _ = calibrated(quiet_preset, seed, 128, adc_inl_lsb=inl_lsb)
    assert gain_error < 1e-3 and offset_error < offset_within
    assert calibration.residual_rms_lsb.mean() < 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_through_pcm_1_over_f_noise_the_pooled_calibration_is_no_worse_than_none(seed):
    """One column's fit through 16 PCM cells is uncertain by about 1 % in gain: more than the
    ADC trims differ. Pooling must keep the calibration from making the read-out worse."""
    calibration, (gain_error, offset_error), (nominal_gain, nominal_offset), _ = calibrated("pcm", seed, 128)
    assert gain_error < 1.1 * nominal_gain and offset_error < 1.15 * nominal_offset
    assert np.median(calibration.gain_uncertainty) > 2e-3  # and it says how uncertain one column's own fit is
    assert calibration.residual_rms_lsb.mean() < 1.5 * calibration.noise_floor_lsb


@pytest.mark.parametrize("seed", [1, 2])
def test_on_quieter_rram_cells_the_calibration_beats_the_nominal_read_out(seed):
    _, (gain_error, offset_error), (nominal_gain, nominal_offset), _ = calibrated("rram", seed, 64)
    assert gain_error < 0.6 * nominal_gain and offset_error < 0.5 * nominal_offset


@pytest.mark.parametrize("preset,seed", [("pcm", 0), ("rram", 2)])
def test_ir_drop_reaches_the_read_out_as_a_gain_deficit_of_far_columns(quiet_preset, preset, seed):
    """The twin's wires are on by default: the board's reads of the reference rows lose voltage
    along the row, the SMU's probe does not, so the gain the read-out finds falls toward the
    far columns. No per-column trim can undo a drop that depends on the rest of the row; the
    calibration measures it at the state of its reference rows, and says nothing better."""
    name = quiet_preset if preset == "pcm" else preset
    calibration, _, _, truth = calibrated(name, seed, 128, wire_ohm=None)
    ratio = calibration.gain / truth.adc_gain[0]
    near, far = np.median(ratio[:16]), np.median(ratio[-16:])
    assert far < near - 0.004
    flat, _, _, flat_truth = calibrated(name, seed, 128, wire_ohm=0.0)
    flat_ratio = flat.gain / flat_truth.adc_gain[0]
    assert abs(np.median(flat_ratio[-16:]) - np.median(flat_ratio[:16])) < 0.002


def test_pooling_shrinks_noisy_estimates_and_keeps_clear_ones():
    rng = np.random.default_rng(0)
    truth = 1 + 0.005 * rng.standard_normal(256)
    noisy = shrink_to_pool(truth + 0.02 * rng.standard_normal(256), np.full(256, 0.02))
    clear = shrink_to_pool(truth + 1e-5 * rng.standard_normal(256), np.full(256, 1e-5))
    assert np.sqrt(np.mean((noisy - truth) ** 2)) < 0.0055  # no worse than the spread of the truth
    np.testing.assert_allclose(clear, truth, atol=1e-4)


def test_the_fit_rejects_an_outlier():
    g = np.linspace(1, 20, 8)[:, None] * np.ones((1, 3))
    codes = 50.0 * g + 2.0
    codes[3, 1] += 400  # one wild point in column 1
    slope, intercept, rms, _, _ = fit_columns(g, codes, outlier_mads=5.0)
    np.testing.assert_allclose(slope, 50.0, rtol=1e-9)
    np.testing.assert_allclose(intercept, 2.0, atol=1e-6)


def test_split_halves_keep_a_real_spread_and_pool_pure_noise():
    rng = np.random.default_rng(3)
    truth = 1 + 0.005 * rng.standard_normal(256)
    halves = [truth + 0.004 * rng.standard_normal(256) for _ in range(2)]  # each half: noise near the spread
    both = (halves[0] + halves[1]) / 2
    shrunk, share = shrink_split_half(both, *halves)
    assert 0.6 < share < 0.9  # τ² / (τ² + σ²/2) = 25 / 33 for these numbers
    assert np.sqrt(np.mean((shrunk - truth) ** 2)) < np.sqrt(np.mean((both - truth) ** 2))
    flat = [1 + 0.004 * rng.standard_normal(256) for _ in range(2)]  # no spread at all: only noise
    pooled, none = shrink_split_half((flat[0] + flat[1]) / 2, *flat)
    assert none < 0.1 and np.ptp(pooled) < 0.25 * np.ptp((flat[0] + flat[1]) / 2)


def test_the_weighted_fit_takes_the_offset_from_the_quiet_rows():
    """Noise that grows with the level, as a PCM cell's does: equal weights let the loud high
    rows move the intercept; weighting each row by its measured noise does not."""
    rng = np.random.default_rng(5)
    levels = np.array([0.5] * 4 + [21.5] * 2 + [11.0] * 6)
    g = levels[:, None] + 0.3 * rng.standard_normal((12, 256))
    sigma = np.where(levels < 1, 1.0, 20.0)[:, None]
    codes = 50.0 * g + 3.0 + sigma * rng.standard_normal(g.shape)
    _, b_equal, *_ = fit_columns(g, codes, outlier_mads=5.0)
    a, b, _, a_error, b_error = fit_columns_weighted(g, codes, outlier_sigmas=5.0)
    assert np.sqrt(np.mean((b - 3.0) ** 2)) < 0.6 * np.sqrt(np.mean((b_equal - 3.0) ** 2))
    # and its standard errors, from the noise pooled over the columns, say how far off it is
    assert 0.7 < np.sqrt(np.mean((b - 3.0) ** 2)) / np.sqrt(np.mean(b_error**2)) < 1.3
    assert 0.7 < np.sqrt(np.mean((a / 50.0 - 1) ** 2)) / np.sqrt(np.mean(a_error**2)) < 1.3


UNIFORM_AT_1_PLC = ReadoutCalibrationParams(levels_us=tuple(np.round(np.linspace(0.5, 22.0, 16), 2)), nplc=1.0,
                                            weighted=False, split_half=False)


def test_low_and_high_reference_rows_at_a_short_integration_beat_uniform_levels_at_1_plc():
    """The default design (quiet low rows for the offset, high rows for the gain, 0.05 PLC)
    against sixteen rows spread evenly at 1 PLC, on the same chips: in under a seventh of the
    board time, no worse in gain and offset over seeds (one seed's may differ by noise)."""
    errors = {"default": [], "uniform": []}
    board_s = {}
    for seed in (0, 1, 2):
        for name, params in (("default", ReadoutCalibrationParams()), ("uniform", UNIFORM_AT_1_PLC)):
            rig = TwinRig.build("pcm", rows=128, cols=128, seed=seed, overrides={"wire_ohm": 0.0})
            board, smu = Board(InProcessTransport(rig.board.feed)), Keithley2450(InProcessTransport(rig.smu.feed))
            started = rig.chip.clock.now()
            calibration = calibrate_readout(board, smu, params, WriteVerifyParams())
            board_s[name] = rig.chip.clock.now() - started
            truth = rig.chip.ground_truth()
            errors[name].append((np.sqrt(np.mean((calibration.gain / truth.adc_gain[0] - 1) ** 2)),
                                 np.sqrt(np.mean((calibration.offset_lsb - truth.adc_offset_lsb[0]) ** 2))))
    default, uniform = np.mean(errors["default"], axis=0), np.mean(errors["uniform"], axis=0)
    assert board_s["default"] < board_s["uniform"] / 7
    assert default[0] <= uniform[0] and default[1] <= uniform[1]
