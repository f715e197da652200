"""Fast Gaussian noise for whole-array reads.

Drawing 65,536 fresh normals costs about as much as all the rest of an array read,
so reads take a contiguous slice, at a random offset, of a large pool of N(0, 1)
draws, and refresh a random block of the pool each time. Each draw is still
N(0, 1), independent of the cell it lands on; with a pool 64 times the array and a
steady refresh, reuse between reads is rare and never systematic.
"""

from __future__ import annotations

import numpy as np

POOL_SIZE = 1 << 22
REFRESH_FRACTION = 8  # each draw of n samples regenerates n / REFRESH_FRACTION pool entries


class NoisePool:
    def __init__(self, rng: np.random.Generator, size: int = POOL_SIZE) -> None:
        self._rng = rng
        self._pool = rng.standard_normal(size, dtype=np.float32)

    def normal(self, shape: tuple[int, ...] | int) -> np.ndarray:
        n = int(np.prod(shape))
        size = self._pool.size
        if n * 4 > size:
            return self._rng.standard_normal(shape, dtype=np.float32)
        start = int(self._rng.integers(0, size - n))
        sample = self._pool[start : start + n].copy()
        refresh = max(n // REFRESH_FRACTION, 1)
        at = int(self._rng.integers(0, size - refresh))
        self._rng.standard_normal(dtype=np.float32, out=self._pool[at : at + refresh])
        return sample.reshape(shape)
