"""The chip's measured noise, injected into training: weights that still classify once programmed.

``labctl export-model`` writes what a run measured (``labctl-noise-model/1``): programming
error per target level, drift exponents per level (a drift run), read noise against
conductance, the stuck-cell rate. ``chip_weight_noise`` turns it into the ``weight_noise``
of ``training.train_mlp``: each forward pass of training sees the layer as the chip would
hold it ``t_s`` after programming, mapped the way ``chip_network`` maps it:

* a weight becomes a pair ``G± = low + s·max(±w, 0)``, ``s`` = (high − low) / max |w|;
* each cell is off by the programming error measured at its level (mean and σ,
  interpolated between levels), then drifts by ``((t + t0)/t0)^-ν`` with ν drawn from its
  level's measured mean and spread; a read adds the measured read noise;
* a cell is stuck with the measured rate, at either end of the window, and its partner
  re-targeted to keep the pair's difference where the window allows (as ``labctl
  validate`` compensates stuck cells through their partners);
* the pair's difference over ``s``, divided by the layer's least-squares slope against the
  intended weights (as validate's output-scale fit divides out what the cells share), is
  the weight the forward pass uses.

Since all of that noise, in weight units, scales with the layer's largest |w|, training also
passes the loss's gradient through that dependence to the largest weight
(``scales_with_largest``): a plain straight-through gradient lets one outlier take the
whole window and push every other weight down into the noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl_calibration.training import WeightNoise

T0_S = 20.0  # the drift law's reference time, as the drift protocol's


def _interpolator(levels: list[dict[str, Any]] | None, key: str, x_key: str = "target_us", default: float = 0.0):
    if not levels:
        return lambda g: np.full_like(g, default)
    xs = np.array([row[x_key] for row in levels], dtype=float)
    ys = np.array([row[key] for row in levels], dtype=float)
    order = np.argsort(xs)
    return lambda g: np.interp(g, xs[order], ys[order])


def chip_weight_noise(model: dict[str, Any], low_us: float, high_us: float, t_s: float = 0.0,
                      scale: float = 1.0, copies: int = 1) -> WeightNoise:
    """``weight_noise`` for training from an export-model file's contents (``scale`` multiplies
    every spread: 0 trains plainly, 1 as measured); with ``copies``, a weight is the mean of
    that many independently noisy pairs, as ``chip_network`` holds it where the arrays have room."""
    if copies < 1:
        raise ValueError(f"copies {copies}: at least one pair holds a weight")
    if model.get("format") != "labctl-noise-model/1":
        raise ValueError(f"not a labctl noise model (format {model.get('format')!r})")
    error_mean = _interpolator(model.get("programming_error"), "mean_us")
    error_sigma = _interpolator(model.get("programming_error"), "sigma_us")
    nu_mean = _interpolator(model.get("drift"), "nu_mean")
    nu_std = _interpolator(model.get("drift"), "nu_std")
    read_relative = _interpolator(model.get("read_noise"), "relative", "g_us")
    stuck = float(model.get("stuck_rate") or 0.0) * scale
    window = model.get("window_us") or [0.0, 25.0]
    decay = np.log((t_s + T0_S) / T0_S) if model.get("drift") and t_s > 0 else 0.0

    def cells(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = g + scale * (error_mean(g) + error_sigma(g) * rng.standard_normal(g.shape))
        if decay:
            nu = nu_mean(g) + scale * nu_std(g) * rng.standard_normal(g.shape)
            g = g * np.exp(-nu * decay)
        return g * (1 + scale * read_relative(g) * rng.standard_normal(g.shape))

    def noise(layer: int, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = (high_us - low_us) / float(np.abs(w).max() or 1.0)
        pairs = np.broadcast_to(w, (copies, *w.shape))
        positive, negative = low_us + s * np.clip(pairs, 0, None), low_us + s * np.clip(-pairs, 0, None)
        if stuck:
            # a stuck cell sits at either end of the window and does not drift; its partner is
            # re-targeted to keep the pair's difference where the window allows, as validate does
            stuck_at = np.where(rng.random((2, *pairs.shape)) < 0.5, window[0], window[1])
            hit = rng.random((2, *pairs.shape)) < stuck
            difference = positive - negative
            negative = np.where(hit[0] & ~hit[1], np.clip(stuck_at[0] - difference, *window), negative)
            positive = np.where(hit[1] & ~hit[0], np.clip(stuck_at[1] + difference, *window), positive)
            positive = np.where(hit[0], stuck_at[0], cells(positive, rng))
            negative = np.where(hit[1], stuck_at[1], cells(negative, rng))
        else:
            positive, negative = cells(positive, rng), cells(negative, rng)
        return refitted((positive - negative).mean(axis=0) / s, w)

    noise.scales_with_largest = True  # its spread in weight units is ∝ max|w| (see training.train_mlp)
    return noise


def refitted(noisy: np.ndarray, intended: np.ndarray) -> np.ndarray:
    """The layer divided by its least-squares slope against the intended weights (noisy ≈
    slope·intended): the output scale ``labctl validate`` fits, which takes out what the
    cells share (most of a day's drift) and leaves what they do not (ν's spread and its
    dependence on the level, programming error). validate fits it per column; one slope per
    layer is a little more conservative and stays finite for a column of near-zero weights,
    where a per-column slope fitted to noise would blow the column up in training."""
    slope = float((noisy * intended).sum() / max(float((intended * intended).sum()), 1e-300))
    return noisy / (slope if abs(slope) > 1e-9 else 1.0)
