"""Fast Gaussian noise for whole-array reads.

Drawing 65,536 fresh normals costs about as much as all the rest of an array read,
so reads take a contiguous slice, at a random offset, of a large pool of N(0, 1)
draws, and refresh a random block of the pool each time. Each draw is still
N(0, 1), independent of the cell it lands on; with a pool 64 times the array and a
steady refresh, reuse between reads is rare and never systematic.

A draw's refresh is carried out just before the pool's generator is next used (the next
draw, or ``generator()``), so the same calls are made in the same order as refreshing at
once, and ``view`` can hand out the slice itself, without a copy, valid until that moment.
"""

from __future__ import annotations

import math

import numpy as np

POOL_SIZE = 1 << 22
REFRESH_FRACTION = 32  # each draw of n samples regenerates n / REFRESH_FRACTION pool entries


class NoisePool:
    def __init__(self, rng: np.random.Generator, size: int = POOL_SIZE) -> None:
        self._rng = rng
        self._pool = rng.standard_normal(size, dtype=np.float32)
        self._pending_refresh = 0

    def generator(self) -> np.random.Generator:
        """The generator behind the pool, for draws of one's own (after the pool's due refresh)."""
        self._refresh()
        return self._rng

    def normal(self, shape: tuple[int, ...] | int) -> np.ndarray:
        """N(0, 1) draws of one's own to keep."""
        sample = self.view(shape)
        return sample if sample.flags.writeable else sample.copy()

    def view(self, shape: tuple[int, ...] | int) -> np.ndarray:
        """N(0, 1) draws, read-only and valid only until the pool is next used."""
        self._refresh()
        n = shape if isinstance(shape, int) else math.prod(shape)
        size = self._pool.size
        if n * 4 > size:
            return self._rng.standard_normal(shape, dtype=np.float32)
        start = int(self._rng.integers(0, size - n))
        self._pending_refresh = max(n // REFRESH_FRACTION, 1)
        sample = self._pool[start : start + n].reshape(shape)
        sample.flags.writeable = False
        return sample

    def _refresh(self) -> None:
        refresh, self._pending_refresh = self._pending_refresh, 0
        if refresh:
            at = int(self._rng.integers(0, self._pool.size - refresh))
            self._rng.standard_normal(dtype=np.float32, out=self._pool[at : at + refresh])
