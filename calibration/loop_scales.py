"""The closed loop's converter scales, fitted from its own outputs and kept only where they predict better.

A solve's outputs are ``volts ≈ g_out ∘ (−A⁻¹ (g_in ∘ current))``: each row's input DAC and each
column's output ADC has a gain of its own. They are fitted against what the read-back matrix
predicts for random inputs. That matrix has its own error, from programming and from the
cells' slow read noise, and a full fit can learn that error instead of the converters'. So
three models are fitted on half the inputs and judged on the other half: nominal gains,
output gains only, and both. The one that predicts the held-out half best is kept.
"""

from __future__ import annotations

import numpy as np

SCALE_FIT_ROUNDS = 40  # alternating least squares on a bilinear misfit converges linearly: 40 rounds reach 1e-6


def fit_scales(a_us: np.ndarray, current_ua: np.ndarray, volts: np.ndarray, inputs: bool,
               outputs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-row input gains (when ``inputs``) and per-column output gains with
    ``volts ≈ g_out ∘ (−A⁻¹ (g_in ∘ current))``, by alternating least squares on that one
    misfit over the ``outputs`` rows (default all): with either set fixed the outputs are
    linear in the other. Only the product of the two is determined, so the input gains are
    kept at mean 1; rows no current reached keep gain 1."""
    n = a_us.shape[0]
    rows = np.arange(n) if outputs is None else outputs
    driven = (current_ua ** 2).sum(axis=1) > 0
    inverse = np.linalg.inv(a_us)
    input_gain, output_gain = np.ones(n), np.ones(n)
    for _ in range(SCALE_FIT_ROUNDS if inputs else 1):
        predicted = -inverse[rows] @ (input_gain[:, None] * current_ua)
        output_gain[rows] = (volts[rows] * predicted).sum(axis=1) / np.maximum((predicted ** 2).sum(axis=1), 1e-30)
        if not inputs:
            break
        # output j of vector k is -g_out_j · Σ_i inverse_ji · current_ik · g_in_i
        design = -(output_gain[rows, None, None] * inverse[rows][:, None, :] * current_ua.T[None, :, :])
        design = design[:, :, driven].reshape(-1, int(driven.sum()))
        input_gain[driven] = np.linalg.lstsq(design, volts[rows].reshape(-1), rcond=None)[0]
        norm = input_gain[driven].mean()
        input_gain[driven] /= norm
        output_gain[rows] *= norm
    return input_gain, output_gain


def scale_residual(a_us: np.ndarray, current_ua: np.ndarray, volts: np.ndarray, input_gain: np.ndarray,
                   output_gain: np.ndarray, outputs: np.ndarray | None = None) -> float:
    """RMS misfit, volts, of a scale model on measured outputs (the ``outputs`` rows, default all)."""
    rows = np.arange(a_us.shape[0]) if outputs is None else outputs
    model = output_gain[rows, None] * -np.linalg.solve(a_us, input_gain[:, None] * current_ua)[rows]
    return float(np.sqrt(np.mean((volts[rows] - model) ** 2)))


def choose_scales(a_us: np.ndarray, current_ua: np.ndarray, volts: np.ndarray, outputs: np.ndarray | None = None
                  ) -> tuple[str, np.ndarray, np.ndarray, float]:
    """The scale model that predicts held-out outputs best: nominal gains, per-column output
    gains, or input and output gains, each fitted on half the vectors and judged on the
    other half. Where the read-back matrix's own error is larger than the converters' gain
    errors, a full fit learns that error instead and predicts worse. The held-out half then
    keeps the simpler model."""
    fit, judge = slice(0, None, 2), slice(1, None, 2)
    n = a_us.shape[0]
    candidates = {"nominal": (np.ones(n), np.ones(n))}
    for name, inputs in (("output", False), ("input+output", True)):
        candidates[name] = fit_scales(a_us, current_ua[:, fit], volts[:, fit], inputs, outputs)
    held_out = {name: scale_residual(a_us, current_ua[:, judge], volts[:, judge], *gains, outputs)
                for name, gains in candidates.items()}
    best = min(held_out, key=held_out.get)
    if best == "nominal":
        return best, *candidates[best], held_out[best]
    gains = fit_scales(a_us, current_ua, volts, best == "input+output", outputs)  # refitted on every vector
    return best, *gains, held_out[best]
