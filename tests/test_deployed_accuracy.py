"""Deployed-matrix figures: judged against the intended matrix, beside the run's own noise floor."""

from __future__ import annotations

import numpy as np
import pytest

from labctl_calibration.accuracy import deployed_accuracy
from labctl_calibration.mvm import MvmParams, check_mvm
from labctl_calibration.readout import Readout
from labctl_calibration.targets import ramp
from labctl_calibration.write_verify import WriteVerify, WriteVerifyParams
from labctl_drivers import Board, InProcessTransport
from labctl_sims.server import TwinRig


def synthetic(seed: int = 0, rows: int = 64, cols: int = 32, vectors: int = 200):
    rng = np.random.default_rng(seed)
    intended = rng.uniform(2.0, 20.0, (rows, cols))
    volts = rng.integers(-127, 128, (vectors, rows)) / 127 * 0.2
    test = np.arange(vectors) % 2 == 1
    return rng, intended, volts, test


def test_a_chip_that_computes_exactly_what_was_asked_scores_zero_error():
    rng, intended, volts, test = synthetic()
    exact = volts @ intended
    result = deployed_accuracy(intended, volts, exact, exact[test], test)
    assert result.l2_mean < 1e-12 and result.worst_output < 1e-12 and result.signed_l2_mean < 1e-12
    assert result.noise_floor_l2 == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_programming_error_shows_at_its_expected_size_and_the_noise_floor_at_its_own(seed):
    rng, intended, volts, test = synthetic(seed)
    programmed = intended + 0.8 * rng.standard_normal(intended.shape)  # per-cell error σ 0.8 µS
    noise = 0.3  # µA per output and MVM
    measured = volts @ programmed + noise * rng.standard_normal((len(volts), intended.shape[1]))
    repeat = volts[test] @ programmed + noise * rng.standard_normal((test.sum(), intended.shape[1]))
    result = deployed_accuracy(intended, volts, measured, repeat, test)
    ideal = volts @ intended
    # signed inputs: ‖error‖ ≈ σ·‖v‖ per output, against ‖v·W*‖ (no cancellation in the error)
    expected = np.sqrt((0.8 * np.linalg.norm(volts, axis=1)) ** 2 * intended.shape[1] + noise**2 * intended.shape[1])
    expected = np.mean(expected / np.linalg.norm(ideal, axis=1))
    assert result.l2_mean == pytest.approx(expected, rel=0.15)
    floor = np.mean(noise * np.sqrt(intended.shape[1]) / np.linalg.norm(ideal[test], axis=1))
    assert result.noise_floor_l2 == pytest.approx(floor, rel=0.1)
    assert result.l2_vs_floor > 2
    assert result.signed_l2_mean > result.l2_mean  # differences of pairs are smaller than their parts


def test_a_column_gain_error_is_what_the_output_scale_removes():
    rng, intended, volts, test = synthetic()
    gains = 1 + 0.05 * rng.standard_normal(intended.shape[1])
    measured = (volts @ intended) * gains + 1.0
    result = deployed_accuracy(intended, volts, measured, measured[test], test)
    assert result.raw_l2_mean > 0.02 and result.l2_mean < 1e-9


@pytest.mark.parametrize("preset,seed,size", [("pcm", 0, 64), ("pcm", 3, 32), ("rram", 1, 64)])
def test_the_chip_figures_match_what_its_true_conductances_compute(preset, seed, size):
    """The reported error is the chip's: outputs computed from the twin's true conductances
    (ground truth, tests only) give the same relative error within the measured noise."""
    rig = TwinRig.build(preset, seed=seed, rows=size, cols=size)
    board = Board(InProcessTransport(rig.board.feed))
    readout = Readout(board.adc().lsb_ua, 0.2)
    top = 20.0 if preset == "pcm" else 32.0
    targets = ramp((size, size), 2.0, top, 8)
    WriteVerify(board, readout, WriteVerifyParams(tolerance_us=1.5 if preset == "pcm" else 3.0)).run(targets)
    result = check_mvm(board, readout, MvmParams(vectors=64), intended_us=targets)
    deployed = result.deployed
    truth = rig.chip.ground_truth().conductance_us[0]
    volts = result.inputs / 127 * 0.2
    test = result.test
    ideal, true_out = volts[test] @ targets, volts[test] @ truth
    slope = (true_out * ideal).sum(axis=0) / (ideal * ideal).sum(axis=0)  # the best column scale for the truth
    true_l2 = np.mean(np.linalg.norm(true_out / slope - ideal, axis=1) / np.linalg.norm(ideal, axis=1))
    assert deployed.l2_mean == pytest.approx(true_l2, abs=2 * deployed.noise_floor_l2 + 0.01)
    assert deployed.l2_mean > deployed.noise_floor_l2  # programming error and stuck cells are above the noise
    assert result.corrected["worst_fs"] < deployed.worst_output  # self-consistency flatters: it is not this figure


@pytest.mark.parametrize("largest, rows, expected", [(2000.0, 256, 1), (400.0, 256, 2), (60.0, 256, 16),
                                                     (1.0, 64, 64), (0.0, 32, 32)])
def test_the_range_is_the_largest_power_of_two_that_keeps_the_outputs_in_headroom(largest, rows, expected):
    from labctl_calibration.mvm import choose_gain

    assert choose_gain(largest, 2047, rows, 0.5) == expected


@pytest.mark.parametrize("preset,size", [("pcm", 64), ("rram", 32)])
def test_auto_range_uses_more_of_the_adc_without_clipping_and_leaves_the_default(preset, size):
    rig = TwinRig.build(preset, seed=2, rows=size, cols=size)
    board = Board(InProcessTransport(rig.board.feed))
    readout = Readout(board.adc().lsb_ua, 0.2)
    targets = ramp((size, size), 2.0, 20.0, 8)
    WriteVerify(board, readout, WriteVerifyParams(tolerance_us=3.0)).run(targets)
    fixed = check_mvm(board, readout, MvmParams(vectors=32, gain=1), intended_us=targets)
    auto = check_mvm(board, readout, MvmParams(vectors=32), intended_us=targets)
    assert auto.gain > 1 and auto.clipped == 0 and fixed.gain == 1
    assert board.query("MVM:GAIN?") == "1"  # later steps map codes at the default range
    # finer codes: the self-consistency error shrinks; the deployed error does not grow
    assert auto.raw["rms_fs"] < fixed.raw["rms_fs"]
    assert auto.deployed.noise_floor_l2 <= fixed.deployed.noise_floor_l2 * 1.1


def test_the_cost_of_known_defects_is_taken_out_exactly():
    rng, intended, volts, test = synthetic()
    programmed = intended + 0.3 * rng.standard_normal(intended.shape)
    programmed[5, 3], programmed[17, 20] = 24.0, 0.1  # two stuck cells
    defects = np.zeros(intended.shape)
    defects[5, 3], defects[17, 20] = 24.0 - intended[5, 3], 0.1 - intended[17, 20]
    measured = volts @ programmed
    result = deployed_accuracy(intended, volts, measured, measured[test], test, defects)
    clean = deployed_accuracy(intended, volts, volts @ (programmed - defects), measured[test], test)
    assert result.l2_mean > result.without_defects_l2_mean and result.worst_output > result.without_defects_worst_output
    assert result.without_defects_l2_mean == pytest.approx(clean.l2_mean, rel=1e-9)


def test_matrices_with_nothing_to_be_relative_to_give_no_figure_not_a_crash(tmp_path):
    from typer.testing import CliRunner

    from labctl.cli import app

    _, intended, volts, test = synthetic()
    zeros = np.zeros_like(intended)
    assert deployed_accuracy(zeros, volts, volts @ intended, (volts @ intended)[test], test) is None
    equal_pairs = np.repeat(intended[:, ::2], 2, axis=1)  # every signed weight zero
    figures = deployed_accuracy(equal_pairs, volts, volts @ equal_pairs, (volts @ equal_pairs)[test], test).figures()
    assert figures["signed_l2_mean"] is None and figures["signed_worst_output"] is None
    assert figures["deployed_l2_mean"] < 1e-9
    for name, matrix in (("zeros", np.zeros((16, 16))), ("pairs", np.full((16, 16), 5.0))):
        np.save(tmp_path / f"{name}.npy", matrix)
        result = CliRunner().invoke(app, ["calibrate", "--size", "16x16", "--targets", str(tmp_path / f"{name}.npy"),
                                          "--data", str(tmp_path / name), "-q"])
        assert result.exit_code in (0, 1), result.output
