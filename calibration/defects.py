"""Defect-aware mapping of signed weights: a stuck cell is compensated through its differential partner.

A signed weight lives on a differential column pair, ``w_i ∝ G(i, 2j) − G(i, 2j+1)``. A cell
that will not move (stuck at ``s``, as write-verify measured it) still leaves the pair's
*difference* free: re-target its partner to ``s − d`` (or ``d + s`` when the negative side is
stuck), ``d`` the intended difference, and the pair computes the intended weight for every
input. Where that partner target lies outside the window, the nearest end of the window is
the best the pair can do, and what is left is reported, cell by cell, with its size.
Unsigned (single-column) deployments have no partner: a stuck cell there is reported,
not compensated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from labctl_calibration.write_verify import WriteVerify, WriteVerifyResult


@dataclass(frozen=True)
class PairCompensation:
    targets_us: np.ndarray  # the conductance targets with the partners of stuck cells re-targeted
    partners: np.ndarray  # cells re-targeted (to be programmed again)
    compensated: np.ndarray  # stuck cells whose pair now computes its weight exactly (on target)
    residual_us: np.ndarray  # per stuck cell: |intended − achievable difference|, 0 where compensated

    @property
    def uncompensated(self) -> np.ndarray:
        return self.residual_us > 0


def compensate_pairs(targets_us: np.ndarray, stuck: np.ndarray, stuck_at_us: np.ndarray,
                     window_us: tuple[float, float]) -> PairCompensation:
    """New targets for the partners of ``stuck`` cells (measured at ``stuck_at_us``), pairs being
    columns (2j, 2j+1); a pair with both cells stuck keeps its targets and its residual."""
    low, high = window_us
    cols = targets_us.shape[1]
    pairs = cols // 2
    new = targets_us.astype(float).copy()
    partners = np.zeros(targets_us.shape, dtype=bool)
    residual = np.zeros(targets_us.shape)
    positive, negative = np.s_[:, 0 : 2 * pairs : 2], np.s_[:, 1 : 2 * pairs : 2]
    difference = targets_us[positive] - targets_us[negative]
    stuck_p, stuck_n = stuck[positive], stuck[negative]
    at_p, at_n = stuck_at_us[positive], stuck_at_us[negative]

    both = stuck_p & stuck_n
    residual[positive] = np.where(both, np.abs(difference - (at_p - at_n)), 0.0)

    # the positive side is stuck: the negative side must be at_p - d
    wanted_n = at_p - difference
    only_p = stuck_p & ~stuck_n
    reachable_n = np.clip(wanted_n, low, high)
    new[negative] = np.where(only_p, reachable_n, new[negative])
    partners[negative] |= only_p
    residual[positive] = np.where(only_p, np.abs(wanted_n - reachable_n), residual[positive])

    # the negative side is stuck: the positive side must be d + at_n
    wanted_p = difference + at_n
    only_n = stuck_n & ~stuck_p
    reachable_p = np.clip(wanted_p, low, high)
    new[positive] = np.where(only_n, reachable_p, new[positive])
    partners[positive] |= only_n
    residual[negative] = np.where(only_n, np.abs(wanted_p - reachable_p), residual[negative])

    compensated = stuck & (residual == 0)
    if cols % 2:  # an odd last column has no partner
        compensated[:, -1] = False
        residual[:, -1] = np.where(stuck[:, -1], np.nan, 0.0)
    return PairCompensation(new, partners, compensated, residual)


def compensate_through_partners(verify: WriteVerify, result: WriteVerifyResult, window_us: tuple[float, float]
                                ) -> tuple[WriteVerifyResult, PairCompensation]:
    """Re-target and program the partners of the cells ``result`` found stuck; the merged
    result holds what each cell was last programmed to and read at."""
    plan = compensate_pairs(result.targets_us, result.stuck, result.achieved_us, window_us)
    partners = plan.partners & ~result.stuck
    again = verify.run(plan.targets_us, include=partners, known_stuck=result.stuck)
    return result.merged(again, partners), plan


def partner_values(values: np.ndarray) -> np.ndarray:
    """Each cell's differential partner's value (columns 2j and 2j+1 swapped); NaN for an odd
    last column, which has no partner."""
    out = np.full(values.shape, np.nan)
    pairs = values.shape[1] // 2
    out[:, 0 : 2 * pairs : 2] = values[:, 1 : 2 * pairs : 2]
    out[:, 1 : 2 * pairs : 2] = values[:, 0 : 2 * pairs : 2]
    return out


def drifted_pair_levels(aims_us: np.ndarray, factor: np.ndarray, conductance_us: np.ndarray,
                        stuck: np.ndarray) -> np.ndarray:
    """Where each cell should be once its column has drifted by ``factor``, pairs kept whole.

    A cell with a free partner is where its column went, ``factor·aim``. A cell compensating
    a stuck partner holds ``s ± d`` and the stuck cell does not drift with the column, so
    only the pair's difference may: it belongs at ``s + factor·(aim − s)``, ``s`` the partner
    as read now. Aiming it at ``factor·aim`` instead would leave the pair off by
    ``(1 − factor)·s``, several µS on a stuck-high partner after a day of PCM drift."""
    level = factor * aims_us
    pinned = partner_values(stuck.astype(float)) == 1.0
    pinned &= ~stuck
    if pinned.any():
        s = partner_values(conductance_us)
        level = np.where(pinned, s + factor * (aims_us - s), level)
    return level
