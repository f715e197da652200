"""Systems larger than one analogue inverse, by recursive block (Schur-complement) inversion.

Split ``A`` into blocks ``[[A11, A12], [A21, A22]]``. Then

    X1' = A11⁻¹ [A12 | B1]                   (one leaf solve per column)
    S   = A22 − A21 · A11⁻¹A12               (the Schur complement, digital glue)
    X2  = S⁻¹ (B2 − A21 · A11⁻¹B1)
    X1  = A11⁻¹B1 − A11⁻¹A12 · X2

and recurse on ``A11`` and ``S`` until a block fits the leaf solver, which is the chip's
closed loop. This is the recursive block inversion the Milano closed-loop chip's authors
solve differential equations with. A matrix of ``n`` rows takes ``n / leaf`` programmings
of the chip, for ``n`` a leaf size times a power of two. Symmetric positive-definite
matrices keep every ``A11`` and ``S`` positive definite, so every block the loop sees is
stable; other matrices may give blocks it refuses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Leaf = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (A block, right-hand sides) -> solutions


def block_solve(a: np.ndarray, b: np.ndarray, leaf_size: int, leaf: Leaf) -> np.ndarray:
    """X with A·X = B, every inverse taken by ``leaf`` on blocks of at most ``leaf_size`` rows."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    vector = b.ndim == 1
    rhs = b[:, None] if vector else b
    if a.ndim != 2 or a.shape[0] != a.shape[1] or rhs.shape[0] != a.shape[0]:
        raise ValueError(f"A must be square and B must have its rows: A is {a.shape}, B is {b.shape}")
    x = _solve(a, rhs, leaf_size, leaf)
    return x[:, 0] if vector else x


def _solve(a: np.ndarray, b: np.ndarray, leaf_size: int, leaf: Leaf) -> np.ndarray:
    n = a.shape[0]
    if n <= leaf_size:
        return leaf(a, b)
    half = n // 2
    a11, a12, a21, a22 = a[:half, :half], a[:half, half:], a[half:, :half], a[half:, half:]
    first = _solve(a11, np.hstack([a12, b[:half]]), leaf_size, leaf)
    inv_a12, inv_b1 = first[:, : n - half], first[:, n - half:]
    schur = a22 - a21 @ inv_a12
    x2 = _solve(schur, b[half:] - a21 @ inv_b1, leaf_size, leaf)
    x1 = inv_b1 - inv_a12 @ x2
    return np.vstack([x1, x2])


def leaf_count(n: int, leaf_size: int) -> int:
    """How many leaf programmings ``block_solve`` needs for an ``n``-row system."""
    return 1 if n <= leaf_size else leaf_count(n // 2, leaf_size) + leaf_count(n - n // 2, leaf_size)


def relative_errors(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """‖x − x*‖ / ‖x*‖ per column (per right-hand side)."""
    x, reference = np.atleast_2d(x.T).T, np.atleast_2d(reference.T).T
    return np.linalg.norm(x - reference, axis=0) / np.maximum(np.linalg.norm(reference, axis=0), 1e-300)
