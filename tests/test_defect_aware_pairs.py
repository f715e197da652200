"""Signed weights: a stuck cell is compensated through its differential partner, checked against truth."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from labctl import api
from labctl_calibration.defects import compensate_pairs

runner = CliRunner()


def test_a_stuck_positive_cell_moves_its_negative_partner_by_the_same_amount():
    targets = np.array([[12.0, 2.0, 5.0, 9.0]])
    stuck = np.array([[True, False, False, True]])
    at = np.array([[20.0, 0.0, 0.0, 0.1]])
    plan = compensate_pairs(targets, stuck, at, (0.0, 25.0))
    # pair 0: want 12 - 2 = 10, positive stuck at 20: negative to 10; pair 1: want -4, negative stuck at 0.1:
    # positive to -3.9, below the window: 0, and 3.9 µS the pair cannot reach
    np.testing.assert_allclose(plan.targets_us, [[12.0, 10.0, 0.0, 9.0]])
    np.testing.assert_array_equal(plan.partners, [[False, True, True, False]])
    np.testing.assert_array_equal(plan.compensated, [[True, False, False, False]])
    np.testing.assert_allclose(plan.residual_us, [[0.0, 0.0, 0.0, 3.9]])


def test_a_pair_stuck_on_both_sides_keeps_its_targets_and_says_what_it_misses():
    targets = np.array([[12.0, 2.0]])
    plan = compensate_pairs(targets, np.array([[True, True]]), np.array([[24.0, 0.1]]), (0.0, 25.0))
    np.testing.assert_allclose(plan.targets_us, targets)
    assert not plan.partners.any() and plan.residual_us[0, 0] == pytest.approx(abs(10.0 - 23.9))


@pytest.mark.parametrize("seed", [0, 3])
def test_calibrating_signed_weights_makes_the_pairs_of_stuck_cells_compute_their_weight(tmp_path, seed):
    weights = np.random.default_rng(seed).standard_normal((64, 32))
    np.save(tmp_path / "w.npy", weights)
    rigs = []
    outcome = api.calibrate("chip0", size="64x64", seed=seed, weights=tmp_path / "w.npy", data=tmp_path / "d",
                            keep_rig=rigs)
    figures = outcome.steps["write_verify"]
    assert figures["pairs_stuck_cells"] > 0 and figures["pairs_compensated"] > 0
    truth = rigs[0].twin.chip.ground_truth()
    g = truth.conductance_us[0]
    stuck = truth.stuck_low[0] | truth.stuck_high[0]
    low, high = 2.0, 20.0  # the built-in protocol's [targets] range the weights are scaled into
    largest = np.abs(weights).max()
    intended = weights * (high - low) / largest
    achieved = g[:, 0::2] - g[:, 1::2]
    hit = stuck[:, 0::2] ^ stuck[:, 1::2]  # pairs with one stuck cell
    # a pair whose partner could take up the difference computes its weight within the cells' tolerance
    reachable = np.where(stuck[:, 0::2], g[:, 0::2] - intended, g[:, 1::2] + intended)
    fixable = hit & (reachable >= 0.5) & (reachable <= 0.9 * 25.0)
    assert fixable.sum() >= 3
    error = np.abs(achieved - intended)[fixable]
    assert np.median(error) < 1.5 and (error < 3.0).mean() >= 0.8
    assert outcome.steps["mvm"]["deployed_as"].startswith("signed")
