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
