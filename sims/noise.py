"""Fast Gaussian noise for whole-array reads.

Drawing 65,536 fresh normals costs about as much as all the rest of an array read,
so reads take a contiguous slice, at a random offset, of a large pool of N(0, 1)
draws, and renew the pool as they go. Each draw is still N(0, 1), independent of the
cell it lands on; with a pool 64 times the array, reuse between reads is rare and never
systematic.

How much reuse there is depends on the pool's size, not on how fast it is renewed: two
views of n draws at random offsets share about n² / size values (1.6 % of a 256x256
read's), each landing on cells as far apart as the two offsets, a shift that differs from
pair to pair, whatever the renewal rate. The renewal bounds how long one value lives: each view of n draws
renews n / 64 of the pool, in blocks of 65,536 at a random place, so the whole pool is
new after some 4,000 array reads' worth of draws (an overnight drift run makes hundreds
to thousands; within it, each read still lands at a random place of 4 M independent draws).

A renewal that is due is carried out just before the pool's generator is next used (the next
draw, or ``generator()``), so the same calls are made in the same order as renewing at once,
and ``view`` can hand out the slice itself, without a copy, valid until that moment. With
numba installed the renewal runs numba's port of numpy's float32 ziggurat on the same
generator: the same draws, at 0.6 of the cost, once a call's fixed 40 µs is spread over a block.
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np

POOL_SIZE = 1 << 22
REFRESH_FRACTION = 64  # each draw of n samples renews n / REFRESH_FRACTION pool entries...
REFRESH_BLOCK = 1 << 16  # ...in blocks of this many, once that many are due


class NoisePool:
    def __init__(self, rng: np.random.Generator, size: int = POOL_SIZE, fused: ModuleType | None = None) -> None:
        self._rng = rng
        self._fused = fused  # sims.fused: numpy's float32 ziggurat compiled, the same draws at 0.6 of the cost
        self._pool = np.empty(size, dtype=np.float32)
        self._standard_normal(self._pool)
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
        self._pending_refresh += max(n // REFRESH_FRACTION, 1)
        sample = self._pool[start : start + n].reshape(shape)
        sample.flags.writeable = False
        return sample

    def views(self, shape: tuple[int, ...] | int, count: int) -> list[np.ndarray]:
        """``count`` views drawn in turn, as ``view`` draws them, all valid together until the
        pool is next used: one the pool's renewal would overwrite is copied first (once in
        some four million draws), the rest cost no copy."""
        taken: list[np.ndarray] = []
        for _ in range(count):
            if taken and self._renewal_due():  # the next view renews first
                taken = [sample if sample.flags.writeable else sample.copy() for sample in taken]
            taken.append(self.view(shape))
        return taken

    def _renewal_due(self) -> bool:
        return self._pending_refresh >= REFRESH_BLOCK

    def _refresh(self) -> None:
        if not self._renewal_due():
            return
        refresh, self._pending_refresh = self._pending_refresh, 0
        at = int(self._rng.integers(0, self._pool.size - refresh))
        self._standard_normal(self._pool[at : at + refresh])

    def _standard_normal(self, out: np.ndarray) -> None:
        if self._fused is None:
            self._rng.standard_normal(dtype=np.float32, out=out)
            return
        with self._rng.bit_generator.lock:  # as numpy's own draws hold it: a rig's threads share the generator
            self._fused.standard_normal_into(self._rng, out)
