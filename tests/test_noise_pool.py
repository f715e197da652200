"""The noise pool's draws behave as independent N(0, 1) draws, at the renewal rate it runs."""

from __future__ import annotations

import numpy as np
import pytest

from labctl_sims import kernels
from labctl_sims.noise import POOL_SIZE, REFRESH_BLOCK, REFRESH_FRACTION, NoisePool


@pytest.mark.parametrize("seed", [0, 7])
def test_pool_draws_are_standard_normal_and_uncorrelated_from_view_to_view(seed):
    pool = NoisePool(np.random.default_rng(seed), fused=kernels.fused())
    views = np.stack([pool.normal(4096) for _ in range(2000)])  # 8.2 M draws, twice the pool
    # averages over many draws settle on the pool's own moments, within 1/√size of the true ones
    # (0.05 % of σ: what the pool costs in faithfulness, far below any physical figure)
    assert abs(views.mean(dtype=np.float64)) < 5 / np.sqrt(POOL_SIZE)
    assert views.var(dtype=np.float64) == pytest.approx(1.0, abs=5 * np.sqrt(2 / POOL_SIZE))
    # the same cell from one view to the next, and to the one after: no memory beyond chance
    for lag in (1, 2):
        per_cell = (views[:-lag] * views[lag:]).mean(axis=0)  # a correlation per cell (unit variances)
        assert abs(per_cell.mean()) < 5 / np.sqrt(per_cell.size * (len(views) - lag))
    # a cell's draws over the run are as spread as independent ones: reuse would show as repeats
    repeats = sum(len(column) - len(np.unique(column)) for column in views.T[:64])
    assert repeats <= 64 * 2000 * 2000 / (2 * POOL_SIZE) * 2 + 5  # chance collisions of sampling with replacement


def test_a_view_is_renewed_in_place_only_after_the_pool_is_next_used():
    pool = NoisePool(np.random.default_rng(1), size=1 << 18)
    first = pool.view(1 << 16)
    kept = first.copy()
    assert not first.flags.writeable
    np.testing.assert_array_equal(first, kept)  # nothing renewed before the next use


def test_views_taken_together_are_the_draws_one_at_a_time_and_survive_a_renewal():
    """``views`` hands out what successive ``normal`` calls would, from the same stream, and
    a view the pool's renewal would overwrite is copied first: over a run of calls that
    crosses many renewals, every view still holds its draws when the last is taken."""
    shape = (200, 200)  # renewals fall before the first view of a call, or between the two
    per_view = 200 * 200 // REFRESH_FRACTION
    # a pool four views long: a renewal (65,536 draws or more) between two views mostly lands on the first
    together = NoisePool(np.random.default_rng(3), size=160_000)
    one_at_a_time = NoisePool(np.random.default_rng(3), size=160_000)
    renewed_between = 0
    for _ in range(500):
        renewed_between += together._pending_refresh < REFRESH_BLOCK <= together._pending_refresh + per_view
        pair = together.views(shape, 2)
        expected = [one_at_a_time.normal(shape) for _ in range(2)]
        for got, want in zip(pair, expected, strict=True):
            np.testing.assert_array_equal(got, want)
    assert renewed_between >= 3  # the renewal between two views of one call was exercised
