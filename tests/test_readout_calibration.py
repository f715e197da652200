"""Read-out calibration recovers the twin's hidden per-column ADC gain and offset."""

from __future__ import annotations

import numpy as np
import pytest

from labctl_calibration.readout_calibration import ReadoutCalibrationParams, calibrate_readout, fit_columns
from labctl_calibration.write_verify import WriteVerifyParams
from labctl_drivers import Board, InProcessTransport, Keithley2450
from labctl_sims.server import TwinRig


@pytest.mark.parametrize("seed", [0, 1])
def test_gain_within_0_1_percent_and_offset_within_half_an_lsb(seed):
    rig = TwinRig.build(rows=256, cols=256, seed=seed)
    board = Board(InProcessTransport(rig.board.feed))
    smu = Keithley2450(InProcessTransport(rig.smu.feed))
    calibration = calibrate_readout(board, smu, ReadoutCalibrationParams(), WriteVerifyParams())
    truth = rig.chip.ground_truth()
    assert np.abs(calibration.gain / truth.adc_gain[0] - 1).max() < 1e-3
    assert np.abs(calibration.offset_lsb - truth.adc_offset_lsb[0]).max() < 0.5
    assert smu.output_enabled is False and board.query("ROUT:PROB?") == "OFF"  # left safe


def test_the_fit_rejects_an_outlier():
    g = np.linspace(1, 20, 8)[:, None] * np.ones((1, 3))
    codes = 50.0 * g + 2.0
    codes[3, 1] += 400  # one wild point in column 1
    slope, intercept, rms = fit_columns(g, codes, outlier_mads=5.0)
    np.testing.assert_allclose(slope, 50.0, rtol=1e-9)
    np.testing.assert_allclose(intercept, 2.0, atol=1e-6)
