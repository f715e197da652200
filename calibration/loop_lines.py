"""Which of the loop's lines a block may use, and how a block sits on them.

Line ``k`` of the loop is row ``k`` of both arrays (op-amp ``k``'s input) together with
column ``k`` (its output). A stuck cell whose partner cannot make up for it leaves its
entry wrong by microsiemens. An example is a cell of array 1 stuck at the top of its
window on the diagonal, where array 0 would have to pass its own top. No calibration
undoes that. On the diagonal it also makes the loop unstable. Such a line is taken out of
use. Its row and column are targeted to a positive diagonal alone. Blocks then go on the
healthy lines, and the block recursion's leaves shrink to fit them.

A line out of use whose diagonal a stuck cell has left weak would make its output wander
with every other line's noise, ``1 / A_kk`` amplified. The solver drives such a line at full
input, so it sits at a rail. What it then passes to the other rows through its column is a
constant, which the offset calibration removes. A block row that reaches a railed line
through an entry a stuck cell ruined would take a large bias from it, so that row goes out
of use too.
"""

from __future__ import annotations

import numpy as np


def embed(a: np.ndarray, lines: np.ndarray, size: int) -> np.ndarray:
    """``a`` on the given physical lines of a ``size`` loop. Every other line carries a
    scaled identity the loop settles on, and nothing couples it to the block."""
    n = a.shape[0]
    if n > lines.size:
        raise ValueError(f"a {n}x{n} block does not fit the loop's {lines.size} usable lines")
    diagonal = float(np.median(np.abs(np.diag(a)))) or float(np.abs(a).max())
    full = np.eye(size) * diagonal
    used = lines[:n]
    full[np.ix_(used, used)] = a
    return full


def ruined_entries(programmed_us: np.ndarray, intended_us: np.ndarray, stuck: np.ndarray, used: np.ndarray,
                   limit_us: float) -> np.ndarray:
    """(row, col) of the entries between used lines that a stuck cell leaves more than ``limit_us`` off."""
    wrong = stuck & (np.abs(programmed_us - intended_us) > limit_us)
    inside = np.zeros_like(wrong)
    inside[np.ix_(used, used)] = True
    return np.argwhere(wrong & inside)


def lines_to_exclude(entries: np.ndarray) -> list[int]:
    """Fewest lines (greedily) that cover every ruined entry: a line takes its row's and its column's entries."""
    remaining = [tuple(map(int, e)) for e in entries]
    chosen: list[int] = []
    while remaining:
        counts: dict[int, int] = {}
        for row, col in remaining:
            counts[row] = counts.get(row, 0) + 1
            if col != row:
                counts[col] = counts.get(col, 0) + 1
        line = max(sorted(counts), key=lambda k: counts[k])
        chosen.append(line)
        remaining = [(r, c) for r, c in remaining if line not in (r, c)]
    return chosen


def plan_lines(programmed_us: np.ndarray, intended_us: np.ndarray, stuck: np.ndarray, used: np.ndarray,
               excluded: list[int], limit_us: float, weak_us: float) -> tuple[list[int], list[int]]:
    """The lines to take out of use now, and the lines out of use that are to be held at a rail."""
    new = lines_to_exclude(ruined_entries(programmed_us, intended_us, stuck, used, limit_us))
    weak = [k for k in excluded if programmed_us[k, k] < weak_us]
    for k in weak:
        off = np.abs(programmed_us[used, k] - intended_us[used, k]) > limit_us
        new += [int(i) for i in used[off]]
    return sorted(set(new) - set(excluded)), weak
