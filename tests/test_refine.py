"""MVM-level refinement: cell errors estimated from the output error alone, and re-programmed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl_calibration.readout import Readout
from labctl_calibration.refine import RefineParams, estimate_cell_error, refine
from labctl_calibration.write_verify import WriteVerify, WriteVerifyParams
from labctl_drivers import Board, InProcessTransport
from labctl_sims.server import TwinRig


def synthetic(seed: int, rows: int, cols: int, vectors: int, noise_ua: float):
    rng = np.random.default_rng(seed)
    intended = rng.uniform(2.0, 20.0, (rows, cols))
    error = rng.normal(0.0, 0.8, (rows, cols))
    volts = rng.integers(-127, 128, (vectors, rows)) / 127 * 0.2
    outputs = volts @ (intended + error) + 0.7 + noise_ua * rng.standard_normal((vectors, cols))
    return intended, error, volts, outputs


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(16, 48), cols=st.integers(2, 12))
def test_the_estimate_finds_each_cells_error_within_its_stated_uncertainty(seed, rows, cols):
    intended, error, volts, outputs = synthetic(seed, rows, cols, 6 * rows + 8, noise_ua=0.2)
    estimate = estimate_cell_error(volts, outputs, intended)
    # what the estimate can see: the error with its component along each column's weights removed
    along = (error * intended).sum(axis=0) / (intended * intended).sum(axis=0)
    visible = error - along * intended
    z = (estimate.error_us - visible) / estimate.sigma_us
    assert np.abs(z).max() < 6
    assert 0.5 < z.std() < 1.5  # the stated uncertainty is the real one (the projection only removes some)


def test_a_column_gain_is_left_to_the_output_scale_not_to_the_cells():
    rng = np.random.default_rng(3)
    intended = rng.uniform(2.0, 20.0, (32, 8))
    volts = rng.integers(-127, 128, (200, 32)) / 127 * 0.2
    outputs = volts @ (intended * 1.05) + 2.0
    estimate = estimate_cell_error(volts, outputs, intended)
    assert np.abs(estimate.error_us).max() < 1e-9


def test_fewer_vectors_than_rows_cannot_determine_the_cells():
    intended, _, volts, outputs = synthetic(0, 32, 4, 30, noise_ua=0.1)
    with pytest.raises(ValueError, match="need more than 33"):
        estimate_cell_error(volts, outputs, intended)


@pytest.mark.parametrize("preset,seed,size,settle_s,rounds", [("pcm", 0, 32, 0.0, 1), ("pcm", 3, 48, 0.0, 1),
                                                              ("rram", 1, 32, 60.0, 3), ("rram", 4, 48, 60.0, 3)])
def test_refinement_lowers_the_true_error_of_the_cells_it_picks(preset, seed, size, settle_s, rounds):
    """Judged on the twin's ground truth (tests only): the cells the MVM error points at are
    truly off, and after re-programming and the same settling they are closer to target."""
    rig = TwinRig.build(preset, seed=seed, rows=size, cols=size)
    board = Board(InProcessTransport(rig.board.feed))
    readout = Readout(board.adc().lsb_ua, 0.2)
    top, tolerance = (20.0, 1.5) if preset == "pcm" else (32.0, 3.0)
    targets = np.random.default_rng(seed).uniform(2.0, top, (size, size))
    verify = WriteVerify(board, readout, WriteVerifyParams(tolerance_us=tolerance, band_us=tolerance / 2))
    first = verify.run(targets)
    advance = lambda seconds: board.write_checked(f"SIM:CLOCK:ADV {seconds!r}")
    advance(settle_s)  # the cells relaxed, as the first round finds them
    before = rig.chip.ground_truth().conductance_us[0] - targets
    params = RefineParams(band_us=0.75, rounds=rounds, settle_s=settle_s)
    result = refine(board, readout, verify, targets, first, params, (0.0, top), advance)
    advance(settle_s)
    after = rig.chip.ground_truth().conductance_us[0] - targets
    picked = result.picked[0]
    usable = ~(first.stuck | first.unreachable)
    assert picked.sum() > 0.05 * usable.sum()
    assert np.corrcoef(result.estimates[0].error_us[usable], before[usable])[0, 1] > 0.5
    assert np.sqrt(np.mean(before[picked] ** 2)) > 1.2 * np.sqrt(np.mean(before[usable & ~picked] ** 2))
    assert np.sqrt(np.mean(after[picked] ** 2)) < 0.85 * np.sqrt(np.mean(before[picked] ** 2))
    assert result.rounds[0].board_s > settle_s
