"""1/f read noise with memory: a sum of Ornstein-Uhlenbeck processes per cell.

aihwkit's read-noise law (Nandakumar et al., ICECS 2019) is accumulated 1/f noise: the
relative spread of a read a time T after programming is
``q_s · sqrt(ln((T + t_read) / (2 t_read)))``, the power of a 1/f spectrum between
``1/T`` and ``1/(2 t_read)``. Drawing that spread afresh on every read would let averaging
divide it by √n; on a chip the slow part of 1/f noise stays put over a read, an average
and a whole write-verify iteration. So each cell carries one Ornstein-Uhlenbeck process
per decade of time constant (equal variance per decade is what makes the sum 1/f):

* components faster than ``FRESH_BELOW_S`` decorrelate between any two reads; an
  averaged read sees their variance reduced by its window, ``2(x - 1 + e^-x)/x²``
  with ``x = window/τ`` (the exact variance of an OU process averaged over a window);
* slower components are state, advanced exactly (``x ← a·x + sqrt(1 - a²)·z``,
  ``a = e^-Δt/τ``), lazily: a component is brought up to date when a quarter of its
  time constant has passed;
* programming restarts a cell's components with the variance accumulated over the
  first ``t0`` (aihwkit's reference time: its read-noise law at ``t_inference`` counts
  from ``t_inference + t0``), so the spread of a single read at time τ after programming
  is aihwkit's at ``t_inference = τ``. Each cell keeps its restart time: a component's
  next update moves a restarted cell over the time since its own restart, and the slowest
  components, which restart at zero, are zeroed then, so a pulse writes only the five
  components it draws and brings nothing else up to date.

``TAU_MIN_S`` and ``WEIGHT`` were fitted (least squares over T = 20 s … 35 days) to
aihwkit's law for a single 250 ns conversion: within 0.25 % in variance. Against a
1/f spectrum with a sinc² window the sum over-estimates a 256-conversion average by
about 10 %, so the twin is, if anything, noisier than a chip when averaging.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from labctl_sims.noise import NoisePool

TAU_MIN_S = 5.3946e-6
DECADES = 16
WEIGHT = np.log(10.0) * 0.99990  # variance per decade, in units of q_s²
FRESH_BELOW_S = 1e-2
UPDATE_FRACTION = 0.25  # a slow component is advanced once this fraction of its τ has passed
RESTART_DRAWN_ABOVE = 0.01  # restart variance below which a component restarts at zero

TAUS_S = TAU_MIN_S * 10.0 ** np.arange(DECADES)
FAST = TAUS_S < FRESH_BELOW_S
SLOW_TAUS_S = TAUS_S[~FAST]


def window_variance(window_s: float, tau_s: np.ndarray) -> np.ndarray:
    """Variance of a unit OU process averaged over ``window_s``, per time constant."""
    x = np.asarray(window_s / tau_s, dtype=float)
    small = x < 1e-4
    safe = np.where(small, 1.0, x)
    return np.where(small, 1.0 - x / 3.0, 2.0 * (x - 1.0 + np.exp(-safe)) / safe**2)


def fresh_sigma(window_s: float) -> float:
    """σ, in units of q_s, of the components that are new at every read averaged over ``window_s``."""
    return float(np.sqrt(WEIGHT * window_variance(window_s, TAUS_S[FAST]).sum()))


def accumulated_variance(since_programming_s: np.ndarray | float, t0_s: float) -> np.ndarray:
    """Total variance (units of q_s²) of a single conversion's 1/f noise τ after programming:
    the law the components reproduce, for tests and documentation."""
    t = np.asarray(since_programming_s, dtype=float)[..., None] + t0_s
    reached = -np.expm1(-2.0 * t / TAUS_S)
    return WEIGHT * (reached * window_variance(250e-9, TAUS_S)).sum(axis=-1)


class FlickerState:
    """The slow 1/f components of every cell, and their sum, in units of q_s."""

    def __init__(self, shape: tuple[int, ...], t0_s: float, noise: NoisePool, now_s: float = 0.0,
                 fused: ModuleType | None = None) -> None:
        self._noise = noise
        self._fused = fused  # sims.fused, or None for the numpy path
        restart_variance = -np.expm1(-2.0 * t0_s / SLOW_TAUS_S)
        # components far slower than t0 restart at zero: what they would have accumulated
        # is under 0.2 % of the variance at t0 and less later, and it saves most of the draws
        self._drawn = int(np.count_nonzero(restart_variance >= RESTART_DRAWN_ABOVE))
        self._restart_sigma = np.sqrt(restart_variance[: self._drawn]).astype(np.float32)
        self._scale = np.float32(np.sqrt(WEIGHT))
        self._components = np.zeros((SLOW_TAUS_S.size, *shape), dtype=np.float32)
        self._updated_s = np.full(SLOW_TAUS_S.size, now_s)
        self._restarted_s = np.full(shape, now_s)  # each cell's last restart
        self._latest_restart_s = now_s  # the latest of them: no cell to look for when older than an update
        self.total = np.zeros(shape, dtype=np.float32)
        self.restart((slice(None),), np.ones(shape, dtype=bool), now_s)
        self._fresh: dict[float, np.float32] = {}

    def fresh(self, window_s: float) -> np.float32:
        if window_s not in self._fresh:
            self._fresh[window_s] = np.float32(fresh_sigma(window_s))
        return self._fresh[window_s]

    def advance(self, now_s: float) -> None:
        """Bring the components that are due up to ``now_s``. A cell restarted since a
        component's last update moves from its restart value (zero for the components that
        restart at zero) over the time since its restart, so the transition is exact for
        every cell and a pulse need not bring anything up to date first."""
        elapsed = now_s - self._updated_s
        due = elapsed >= UPDATE_FRACTION * SLOW_TAUS_S
        for k in np.flatnonzero(due):
            keep = np.float32(np.exp(-elapsed[k] / SLOW_TAUS_S[k]))
            component = self._components[k]
            noise = self._noise.view(component.shape)
            change = component * (keep - np.float32(1.0))
            change += noise * np.float32(np.sqrt(1.0 - keep * keep))
            if self._latest_restart_s >= self._updated_s[k]:
                restarted = np.flatnonzero(self._restarted_s >= self._updated_s[k])
                self._from_restart(k, restarted, now_s, noise, change)
            component += change
            change *= self._scale
            self.total += change
            self._updated_s[k] = now_s

    def _from_restart(self, k: int, cells: np.ndarray, now_s: float, noise: np.ndarray, change: np.ndarray) -> None:
        """The change of component ``k`` of the given (flat) cells, restarted since its last
        update: an OU transition over the time since their own restart."""
        component = self._components[k].reshape(-1)
        if k >= self._drawn:  # restarted at zero: whatever the component still holds is stale
            component[cells] = 0.0
        start = component[cells]
        keep = np.exp((self._restarted_s.reshape(-1)[cells] - now_s) / SLOW_TAUS_S[k]).astype(np.float32)
        moved = start * (keep - np.float32(1.0))
        moved += noise.reshape(-1)[cells] * np.sqrt(1.0 - keep * keep)
        change.reshape(-1)[cells] = moved

    def restart(self, index: tuple, where: np.ndarray, now_s: float) -> None:
        """Programmed cells start over with what the first t0 accumulates."""
        self._latest_restart_s = max(self._latest_restart_s, now_s)
        block = self.total[index]
        fused = self._fused if len(index) == 2 and isinstance(index[1], slice) and block.ndim == 2 else None
        if fused is not None:
            fresh = self._noise.view((self._drawn, *block.shape))
            array, rows = index
            fused.restart_flicker(self._components, array, rows.indices(self.total.shape[1])[0], block, fresh,
                                  self._restart_sigma, self._scale, where, self._restarted_s[index], now_s)
            return
        fresh = self._noise.normal((self._drawn, *block.shape))
        fresh *= self._restart_sigma.reshape(-1, *([1] * block.ndim))
        drawn = self._components[(slice(0, self._drawn), *index)]
        if where.all():
            drawn[...] = fresh
            self._restarted_s[index] = now_s
            np.sum(fresh, axis=0, out=block)
            block *= self._scale
            return
        np.copyto(drawn, fresh, where=where)
        np.copyto(self._restarted_s[index], now_s, where=where)
        np.copyto(block, fresh.sum(axis=0) * self._scale, where=where)
