"""A run's measured statistics in the form IBM aihwkit's ``PCMLikeNoiseModel`` takes.

aihwkit's PCM-like model (Nandakumar et al., 2019; ``aihwkit.inference.noise.pcm``) has
fixed laws with a few free numbers, and those are what a run can measure:

* ``prog_coeff``: σ_prog(g) = c0 + c1·g + c2·g² (µS, g = G/g_max), the spread iterative
  programming leaves. Fitted (least squares over target levels, weighted by cells) to the
  spread of write-verify's final reads per level: this chip as labctl programs it.
* ``drift_scale``: ν = |μ(g) + σ(g)·z| · drift_scale with aihwkit's clipped-linear laws of
  ln g. Fitted as mean measured ν over the mean of |μ + σz| at the same cells' targets
  (every working cell's fit: keeping those with R² > 0.5 keeps a low level's fastest cells);
  1.0, marked not measured, without a drift step.
* ``read_noise_scale``: aihwkit's read noise is 1/f, ``q_s(g)·g·sqrt(ln((t + t_read)/(2 t_read)))``.
  The read-noise step's σ over repeated single reads spans ``span`` seconds, which holds
  the 1/f band from ``1/span`` to ``1/(2 t_read)``: its expected σ is
  ``q_s(g)·g·sqrt(ln(span/(2 t_read)))``. The scale is the median of measured over expected
  across the step's conductance bins (1.0, marked not measured, without the step).
* ``t_0`` (the drift law's reference time, as labctl's drift protocol uses it) and
  ``t_read`` (one conversion) are taken as they are, not fitted.

The file names the class and its keyword arguments, so ``PCMLikeNoiseModel(**kwargs)``
builds the model; ``fitted`` says what each number was fitted from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FORMAT = "aihwkit-pcm-like/1"
NU_MEAN = (-0.0155, 0.0244, 0.049, 0.1)  # aihwkit: μ_ν = clip(a·ln g + b, lo, hi)
NU_STD = (-0.0125, -0.0059, 0.008, 0.045)
READ_NOISE = (0.0088, 0.65, 0.2)  # q_s = min(a / g^b, cap)
T_READ_S = 250e-9
T0_S = 20.0


def _clipped(law: tuple[float, float, float, float], g: np.ndarray) -> np.ndarray:
    a, b, low, high = law
    return np.clip(a * np.log(np.maximum(g, 1e-7)) + b, low, high)


def expected_abs_nu(g: np.ndarray, draws: int = 2000, seed: int = 0) -> np.ndarray:
    """E|μ(g) + σ(g)·z| per relative conductance (aihwkit's ν before drift_scale)."""
    z = np.random.default_rng(seed).standard_normal(draws)
    return np.abs(_clipped(NU_MEAN, g)[:, None] + _clipped(NU_STD, g)[:, None] * z[None, :]).mean(axis=1)


def fit_prog_coeff(levels: list[dict[str, Any]], g_max_us: float) -> list[float]:
    g = np.array([row["target_us"] for row in levels]) / g_max_us
    sigma = np.array([row["sigma_us"] for row in levels])
    weight = np.sqrt(np.array([row["cells"] for row in levels], dtype=float))
    design = np.stack([np.ones_like(g), g, g * g], axis=1)
    coefficients, *_ = np.linalg.lstsq(design * weight[:, None], sigma * weight, rcond=None)
    return [float(c) for c in coefficients]


def fit_drift_scale(targets_us: np.ndarray, nu: np.ndarray, g_max_us: float) -> float:
    return float(nu.mean() / expected_abs_nu(targets_us / g_max_us).mean())


def fit_read_noise_scale(bins: list[dict[str, float]], span_s: float, g_max_us: float) -> float:
    a, b, cap = READ_NOISE
    g = np.array([row["g_us"] for row in bins])
    measured = np.array([row["sigma_us"] for row in bins])
    q_s = np.minimum(a / np.maximum(g / g_max_us, 1e-3) ** b, cap)
    expected = q_s * g * np.sqrt(np.log(span_s / (2 * T_READ_S)))
    keep = (g > 0) & (expected > 0)
    return float(np.median(measured[keep] / expected[keep]))


def aihwkit_model(model: dict[str, Any], drift_cells: tuple[np.ndarray, np.ndarray] | None,
                  read_span_s: float | None) -> dict[str, Any]:
    """From a ``labctl-noise-model/1`` export, the drift fits' (targets, ν) and the read-noise
    step's span."""
    g_max = float((model.get("window_us") or [0.0, 25.0])[1])
    prog = fit_prog_coeff(model["programming_error"], g_max)
    drift = fit_drift_scale(*drift_cells, g_max) if drift_cells is not None and drift_cells[1].size else None
    read = (fit_read_noise_scale(model["read_noise"], read_span_s, g_max)
            if model.get("read_noise") and read_span_s else None)
    return {
        "format": FORMAT,
        "class": "aihwkit.inference.noise.pcm.PCMLikeNoiseModel",
        "kwargs": {"prog_coeff": prog, "g_max": g_max, "prog_coeff_g_max_reference": g_max, "t_read": T_READ_S,
                   "t_0": T0_S, "prog_noise_scale": 1.0, "read_noise_scale": 1.0 if read is None else read,
                   "drift_scale": 1.0 if drift is None else drift},
        "fitted": {"prog_coeff": f"write-verify's final reads, {len(model['programming_error'])} target levels",
                   "drift_scale": "not measured (no drift step): aihwkit's default"
                   if drift is None else f"{drift_cells[1].size} cells' drift fits",
                   "read_noise_scale": "not measured (no read-noise step): aihwkit's default"
                   if read is None else f"read-noise step, reads spanning {read_span_s:.3g} s"},
        "run_id": model["run_id"], "chip": model["chip"], "chip_identity": model["chip_identity"],
    }
