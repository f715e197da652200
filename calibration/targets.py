"""Target conductance patterns and the checks a user's target matrix must pass."""

from __future__ import annotations

import numpy as np


class TargetError(ValueError):
    """A target matrix that cannot be programmed on this chip."""


def ramp(shape: tuple[int, int], low_us: float, high_us: float, levels: int) -> np.ndarray:
    """Evenly spaced levels laid diagonally, so every row and column holds every level.

    A diagonal ramp (level index ``(row + col) mod levels``) rather than bands keeps
    each column's ADC and each row's driver seeing the whole window.
    """
    rows, cols = shape
    values = np.linspace(low_us, high_us, levels)
    index = (np.arange(rows)[:, None] + np.arange(cols)[None, :]) % levels
    return values[index]


def check_targets(targets: np.ndarray, shape: tuple[int, int], window_us: tuple[float, float]) -> np.ndarray:
    """Return ``targets`` as float64, or raise ``TargetError`` saying what is wrong."""
    array = np.asarray(targets)
    if array.shape != shape:
        raise TargetError(f"shape {array.shape} does not match the chip's {shape[0]}x{shape[1]} array")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise TargetError(f"values must be real numbers in µS, got dtype {array.dtype}")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise TargetError(f"{int(bad.sum())} value(s) are not finite, first at row {r}, col {c}")
    low, high = window_us
    outside = (array < low) | (array > high)
    if outside.any():
        r, c = np.argwhere(outside)[0]
        raise TargetError(
            f"{int(outside.sum())} value(s) outside the window {low:g}..{high:g} µS, "
            f"first {array[r, c]:g} at row {r}, col {c}"
        )
    return array


def differential_pairs(weights: np.ndarray, shape: tuple[int, int], low_us: float, high_us: float) -> np.ndarray:
    """Signed weights on differential pairs of columns: ``w ∝ G(2j) − G(2j+1)``.

    Column 2j carries the positive part, 2j+1 the negative part; both sit at
    ``low_us`` for a zero weight and the largest |w| maps to ``high_us``.
    """
    w = np.asarray(weights)
    rows, cols = shape
    if cols % 2:
        raise TargetError(f"differential pairs need an even number of columns, the array has {cols}")
    if w.shape != (rows, cols // 2):
        raise TargetError(f"shape {w.shape} does not match {rows}x{cols // 2} weights for a {rows}x{cols} array")
    if not np.issubdtype(w.dtype, np.number) or not np.all(np.isfinite(w)):
        raise TargetError("weights must be finite real numbers")
    w = w.astype(np.float64)
    largest = float(np.abs(w).max())
    scale = (high_us - low_us) / largest if largest > 0 else 0.0
    targets = np.full(shape, low_us)
    targets[:, 0::2] += np.clip(w, 0, None) * scale
    targets[:, 1::2] += np.clip(-w, 0, None) * scale
    return targets
