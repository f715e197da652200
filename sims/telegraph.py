"""Random telegraph noise: a few cells whose conductance jumps between two levels.

A single charge trap near a filament (RRAM) or in the amorphous plug (PCM) switches the
cell's current between two discrete levels at random; averaging does not remove it and
its distribution is bimodal, not Gaussian. A fraction ``rtn_fraction`` of working cells
carries one trap: amplitude ``ΔG/G`` lognormal about ``rtn_amplitude`` (log-σ 0.5), a
symmetric two-state process with a mean dwell time log-uniform over ``rtn_tau_range_s``.
The state is advanced exactly: over Δt a trap has flipped with probability
``(1 − e^(−2Δt/τ)) / 2``. Traps are defects of the cell: they survive programming.
"""

from __future__ import annotations

import numpy as np

from labctl_sims.presets import DeviceParams


class TelegraphNoise:
    """Two-level fluctuators on a fraction of cells; ``level`` is each cell's ΔG/G now."""

    def __init__(self, p: DeviceParams, working: np.ndarray, rng: np.random.Generator) -> None:
        self._rng = rng
        self.level = np.zeros(working.shape, dtype=np.float32)
        chosen = working & (rng.random(working.shape) < p.rtn_fraction)
        self._cells = np.flatnonzero(chosen)
        n = self._cells.size
        low, high = p.rtn_tau_range_s
        self._tau = np.exp(rng.uniform(np.log(low), np.log(high), n))
        self._amplitude = (p.rtn_amplitude * rng.lognormal(0.0, 0.5, n)).astype(np.float32)
        self._state = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), n)
        self._updated_s = 0.0
        self.level.flat[self._cells] = self._state * self._amplitude

    @property
    def cells(self) -> np.ndarray:
        """Flat indices of the cells that carry a trap (for tests)."""
        return self._cells

    def advance(self, now_s: float) -> None:
        elapsed = now_s - self._updated_s
        if elapsed <= 0 or not self._cells.size:
            return
        flip = self._rng.random(self._cells.size) < 0.5 * -np.expm1(-2.0 * elapsed / self._tau)
        if flip.any():
            self._state[flip] *= -1.0
            self.level.flat[self._cells[flip]] = self._state[flip] * self._amplitude[flip]
        self._updated_s = now_s
