"""How close a chip computes to the matrix the user asked for: a deployed matrix's figures.

An MVM check against conductances the board itself read a moment earlier measures the
chip's self-consistency, not its use: stuck cells, programming error and drift all cancel
out of it. What a user deploys is an *intended* matrix ``W*`` (the conductance targets, or
signed weights on differential column pairs ``W*_k = W*_{2k} − W*_{2k+1}``), so the
figures here compare the chip's outputs ``y`` with ``y* = v · W*`` for the same inputs:

* relative L2 error per input vector, ``‖y − y*‖ / ‖y*‖``, mean and worst;
* the worst single output error as a fraction of the largest ideal output;
* the same on differential pairs (signed weights, where errors do not cancel in the mean);
* beside them, the noise floor of the same run: two MVMs of the same input differ by
  ``‖y₁ − y₂‖``, so one MVM's own noise is ``‖y₁ − y₂‖ / (√2 ‖y*‖)``: the error no
  programming could remove at this averaging. The ratio of the error to it says how much
  is left to gain.

The outputs are judged after the per-column output scale a deployment calibrates (an
affine ``y = a_c·y* + b_c`` per column, fitted on the calibration half of the input
vectors against the intended outputs, as aihwkit's column-wise output scales do); the
figures are computed on the held-out half only. The uncorrected figures are kept too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DeployedAccuracy:
    l2_mean: float  # ‖y − y*‖ / ‖y*‖ over held-out vectors, after the per-column output scale
    l2_worst: float
    worst_output: float  # max |y − y*| / max |y*|
    raw_l2_mean: float  # the same without the output scale (the read-out's mapping only)
    raw_worst_output: float
    signed_l2_mean: float  # differential column pairs: signed weights W*_2k − W*_2k+1
    signed_l2_worst: float
    signed_worst_output: float
    noise_floor_l2: float  # one MVM's repeatability, relative to ‖y*‖
    signed_noise_floor_l2: float
    without_defects_l2_mean: float | None = None  # the L2 error with the defective cells' known error taken out
    without_defects_worst_output: float | None = None

    @property
    def l2_vs_floor(self) -> float:
        return self.l2_mean / self.noise_floor_l2 if self.noise_floor_l2 > 0 else float("nan")

    def figures(self) -> dict[str, float | None]:
        """Every figure by name; one that is undefined for this matrix (signed figures of a
        matrix whose pairs are equal) is None."""
        return {name: (value if value is None or np.isfinite(value) else None)
                for name, value in self._all().items()}

    def _all(self) -> dict[str, float | None]:
        return {"deployed_l2_mean": self.l2_mean, "deployed_l2_worst": self.l2_worst,
                "deployed_worst_output": self.worst_output, "deployed_raw_l2_mean": self.raw_l2_mean,
                "deployed_raw_worst_output": self.raw_worst_output, "signed_l2_mean": self.signed_l2_mean,
                "signed_l2_worst": self.signed_l2_worst, "signed_worst_output": self.signed_worst_output,
                "noise_floor_l2": self.noise_floor_l2, "signed_noise_floor_l2": self.signed_noise_floor_l2,
                "deployed_l2_vs_floor": self.l2_vs_floor,
                **({"without_defects_l2_mean": self.without_defects_l2_mean,
                    "without_defects_worst_output": self.without_defects_worst_output}
                   if self.without_defects_l2_mean is not None else {})}


def _relative(error: np.ndarray, ideal: np.ndarray) -> np.ndarray:
    """Per vector ``‖error‖ / ‖ideal‖``; NaN where the ideal output is zero (nothing to be relative to)."""
    norm = np.linalg.norm(ideal, axis=1)
    return np.linalg.norm(error, axis=1) / np.where(norm > 0, norm, np.nan)


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _max(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else float("nan")


def _differential(outputs: np.ndarray) -> np.ndarray:
    pairs = outputs.shape[1] // 2
    return outputs[:, 0 : 2 * pairs : 2] - outputs[:, 1 : 2 * pairs : 2]


def output_scale(intended_ua: np.ndarray, measured_ua: np.ndarray, fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column ``measured = a·intended + b``, least squares over the ``fit`` vectors."""
    x, y = intended_ua[fit], measured_ua[fit]
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    dx = x - x_mean
    variance = (dx * dx).sum(axis=0)
    slope = np.where(variance > 0, (dx * (y - y_mean)).sum(axis=0) / np.where(variance > 0, variance, 1), 1.0)
    slope = np.where(np.abs(slope) > 1e-9, slope, 1.0)
    return slope, y_mean - slope * x_mean


def relative_l2(ideal_ua: np.ndarray, measured_ua: np.ndarray, slope: np.ndarray, intercept_ua: np.ndarray) -> float:
    """Mean relative L2 error of ``measured`` against ``ideal`` through a given output scale
    (one fitted earlier: what a deployment that did not re-fit it computes)."""
    return _mean(_relative((measured_ua - intercept_ua) / slope - ideal_ua, ideal_ua))


def deployed_accuracy(intended_us: np.ndarray, volts: np.ndarray, measured_ua: np.ndarray, repeat_ua: np.ndarray,
                      test: np.ndarray, defect_error_us: np.ndarray | None = None) -> DeployedAccuracy | None:
    """The figures for a deployed matrix ``intended_us`` (rows x cols, µS) and inputs ``volts``
    (vectors x rows): ``measured_ua`` every vector's outputs, ``repeat_ua`` the held-out
    (``test``) vectors measured a second time, in the same order.

    ``defect_error_us``: the measured error of the cells that could not be programmed
    (stuck or unreachable: achieved − intended, 0 elsewhere). With it, the figures are also
    given with that known error taken out of the outputs: what the defects cost, and what
    the rest of the chip achieves."""
    ideal = volts @ intended_us
    if not np.abs(ideal[test]).max(initial=0.0) > 0:
        return None  # a matrix of zeros computes nothing to be relative to
    slope, intercept = output_scale(ideal, measured_ua, ~test)
    corrected = (measured_ua - intercept) / slope
    held_ideal, held, held_raw = ideal[test], corrected[test], measured_ua[test]
    repeat = (repeat_ua - intercept) / slope
    l2 = _relative(held - held_ideal, held_ideal)
    signed_ideal, signed = _differential(held_ideal), _differential(held)
    signed_l2 = _relative(signed - signed_ideal, signed_ideal)
    largest = np.abs(held_ideal).max()
    signed_largest = np.abs(signed_ideal).max(initial=0.0)  # 0: equal pairs, no signed weight to judge
    signed_worst = float(np.abs(signed - signed_ideal).max() / signed_largest) if signed_largest > 0 else float("nan")
    floor = _relative(held - repeat, held_ideal) / np.sqrt(2)
    signed_floor = _relative(signed - _differential(repeat), signed_ideal) / np.sqrt(2)
    without_l2 = without_worst = None
    if defect_error_us is not None:  # the same figures, output scale included, with the defects' known part removed
        cost = volts @ defect_error_us
        clean = deployed_accuracy(intended_us, volts, measured_ua - cost, repeat_ua - cost[test], test)
        assert clean is not None  # the same intended outputs as above
        without_l2, without_worst = clean.l2_mean, clean.worst_output
    return DeployedAccuracy(
        without_defects_l2_mean=without_l2, without_defects_worst_output=without_worst,
        l2_mean=_mean(l2), l2_worst=_max(l2),
        worst_output=float(np.abs(held - held_ideal).max() / largest),
        raw_l2_mean=_mean(_relative(held_raw - held_ideal, held_ideal)),
        raw_worst_output=float(np.abs(held_raw - held_ideal).max() / largest),
        signed_l2_mean=_mean(signed_l2), signed_l2_worst=_max(signed_l2), signed_worst_output=signed_worst,
        noise_floor_l2=_mean(floor), signed_noise_floor_l2=_mean(signed_floor),
    )
