"""Statistics of stored runs: the noise model a run measured, and run-to-run comparison.

Analogue failures are statistical drifts, so runs are compared as distributions
(programming error, drift exponent, MVM error) with a two-sample Kolmogorov–Smirnov
test, and a regression needs both significance and a material change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from labctl.errors import UsageError
from labctl.store.query import Store

MODEL_FORMAT = "labctl-noise-model/1"


def _levels(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group cells by target level (ramp levels as they are; free-form targets in 8 bins)."""
    rounded = np.round(targets, 3)
    levels = np.unique(rounded)
    if len(levels) <= 16:
        return rounded, levels
    edges = np.linspace(targets.min(), targets.max(), 9)
    index = np.clip(np.digitize(targets, edges[1:-1]), 0, 7)
    centres = (edges[:-1] + edges[1:]) / 2
    return centres[index], centres


def _optional_table(store: Store, name: str, run_id: str, columns: list[str]):
    try:
        frame = store.table(name, run=run_id, columns=columns)
    except UsageError:
        return None
    return frame if len(frame) else None


def noise_model(store: Store, run_id: str) -> dict[str, Any]:
    """The chip's measured statistics, for error-aware training (format ``labctl-noise-model/1``)."""
    manifest = store.manifest(run_id)
    cells = _optional_table(store, "cells", run_id, ["row", "col", "target_us", "achieved_us", "stuck"])
    if cells is None:
        raise UsageError(f"run {run_id} has no cells table: export needs a write-verify step")
    working = cells[~cells["stuck"]]
    level, levels = _levels(working["target_us"].to_numpy())
    error = working["achieved_us"].to_numpy() - working["target_us"].to_numpy()
    programming = [{"target_us": float(v), "mean_us": float(error[level == v].mean()),
                    "sigma_us": float(error[level == v].std()), "cells": int((level == v).sum())}
                   for v in levels if (level == v).any()]
    drift = None
    fits = _drift_fits(store, run_id, working)
    if fits is not None:
        level, levels = _levels(fits["target_us"].to_numpy())
        drift = [_drift_level(float(v), fits[level == v]) for v in levels if (level == v).any()]
    steps = manifest.get("steps", {})
    board = manifest.get("instruments", {}).get("board", {})
    return {
        "format": MODEL_FORMAT,
        "run_id": run_id,
        "chip": manifest.get("chip"),
        "chip_identity": manifest.get("chip_identity"),
        "run_status": manifest.get("status"),
        "run_passed": manifest.get("passed"),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "window_us": manifest.get("chip_spec", {}).get("window_us"),
        "adc": board.get("adc"),
        "programming_error": programming,
        "drift": drift,
        "read_noise": steps.get("read_noise", {}).get("versus_conductance"),
        "stuck_rate": float(cells["stuck"].mean()),
        "mvm": ({"rms_fs": steps["mvm"]["corrected_rms_fs"], "worst_fs": steps["mvm"]["corrected_worst_fs"],
                 **{name: steps["mvm"][name] for name in ("deployed_l2_mean", "deployed_worst_output",
                                                          "signed_l2_mean", "noise_floor_l2") if name in steps["mvm"]}}
                if "mvm" in steps else None),
    }


def _drift_fits(store: Store, run_id: str, working):
    """Every working cell's drift fit with its target. Not only the well-fitted ones: at a low
    level the read noise leaves most fits at R² < 0.5, and those kept are the cells that
    drifted fastest (at 2 µS on the PCM twin a tenth of the cells, ν 0.105 against 0.062 for
    all of them and 0.064 by the twin's law)."""
    fits = _optional_table(store, "drift", run_id, None)
    if fits is None:
        return None
    columns = ["row", "col", "nu"] + (["nu_se"] if "nu_se" in fits.columns else [])
    merged = fits[columns].merge(working[["row", "col", "target_us"]], on=["row", "col"])
    merged = merged[np.isfinite(merged["nu"])]
    return merged if len(merged) else None


def _drift_level(target_us: float, fits) -> dict[str, Any]:
    """ν's mean and the spread of the cells' ν, the fits' own scatter taken out
    (var ν̂ = var ν + mean se²); a run stored without fit errors keeps the scatter in."""
    nu = fits["nu"].to_numpy(dtype=float)
    se = fits["nu_se"].to_numpy(dtype=float) if "nu_se" in fits else np.array([np.nan])
    fit_variance = float(np.mean(se**2)) if np.isfinite(se).all() else None
    return {"target_us": target_us, "nu_mean": float(nu.mean()),
            "nu_std": float(np.sqrt(max(float(nu.var()) - (fit_variance or 0.0), 0.0))),
            "nu_fit_se": None if fit_variance is None else float(np.sqrt(fit_variance)), "cells": int(nu.size)}


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Kolmogorov–Smirnov statistic and asymptotic p-value (Stephens' small-sample correction)."""
    a, b = np.sort(a), np.sort(b)
    both = np.concatenate([a, b])
    d = float(np.abs(np.searchsorted(a, both, "right") / len(a) - np.searchsorted(b, both, "right") / len(b)).max())
    en = math.sqrt(len(a) * len(b) / (len(a) + len(b)))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 0.2:
        return d, 1.0
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, float(min(max(p, 0.0), 1.0))


def aihwkit_inputs(store: Store, run_id: str) -> tuple[tuple[np.ndarray, np.ndarray] | None, float | None]:
    """What the aihwkit export fits besides the noise model: the drift fits' (target, ν) of
    the working cells, and the time the read-noise step's reads spanned."""
    drift = None
    cells = _optional_table(store, "cells", run_id, ["row", "col", "target_us", "stuck"])
    fits = _drift_fits(store, run_id, cells[~cells["stuck"]]) if cells is not None else None
    if fits is not None:
        drift = (fits["target_us"].to_numpy(), fits["nu"].to_numpy())
    span = None
    reads = _optional_table(store, "reads", run_id, ["phase", "t_s"])
    if reads is not None:
        noise = reads.loc[reads["phase"] == "noise", "t_s"]  # the read-noise step's reads
        if len(noise) and noise.max() > noise.min():
            span = float(noise.max() - noise.min())
    return drift, span


@dataclass(frozen=True)
class Comparison:
    metric: str
    spread_a: float
    spread_b: float
    ks: float
    p_value: float
    regressed: bool

    test: str = "KS"  # how the two were compared: KS (distributions), McNemar (paired classifications)

    @property
    def change(self) -> float:
        return self.spread_b / self.spread_a - 1 if self.spread_a else float("inf")


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided p of McNemar's exact test: ``b`` samples only A classified right, ``c`` only B."""
    from math import comb

    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(comb(n, k) for k in range(min(b, c) + 1)) / 2**n)


def _validation_comparisons(store: Store, run_a: str, run_b: str, alpha: float) -> list[Comparison]:
    """Accuracy per look, paired sample by sample: B regressed when it classifies worse and
    McNemar's test says the difference is not noise (p < alpha)."""
    columns = ["look", "sample", "label", "correct"]
    a, b = (_optional_table(store, "validation", run, columns) for run in (run_a, run_b))
    if a is None or b is None:
        return []
    results = []
    for look in sorted(set(a["look"]) & set(b["look"])):
        first = a[a["look"] == look].sort_values("sample")
        second = b[b["look"] == look].sort_values("sample")
        if len(first) != len(second) or (first["label"].to_numpy() != second["label"].to_numpy()).any():
            raise UsageError(f"runs {run_a} and {run_b} validated different samples: their accuracies are not paired")
        right_a, right_b = first["correct"].to_numpy(), second["correct"].to_numpy()
        only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
        p = mcnemar_exact(only_a, only_b)
        accuracy_a, accuracy_b = float(right_a.mean()), float(right_b.mean())
        results.append(Comparison(f"accuracy_look{look}", accuracy_a, accuracy_b, (only_a - only_b) / len(right_a),
                                  p, bool(p < alpha and accuracy_b < accuracy_a), test="McNemar"))
    return results


def _distributions(store: Store, run_id: str) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    cells = _optional_table(store, "cells", run_id, ["target_us", "achieved_us", "stuck"])
    if cells is not None:
        working = cells[~cells["stuck"]]
        found["programming_error_us"] = (working["achieved_us"] - working["target_us"]).to_numpy()
    fits = _optional_table(store, "drift", run_id, ["nu", "r2"])
    if fits is not None:
        found["drift_nu"] = fits.loc[fits["r2"] > 0.5, "nu"].to_numpy()
    mvm = _optional_table(store, "mvm", run_id, ["expected_ua", "corrected_ua", "held_out"])
    if mvm is not None:
        held = mvm[mvm["held_out"]]
        found["mvm_error_ua"] = (held["corrected_ua"] - held["expected_ua"]).to_numpy()
    return found


def _spread(metric: str, values: np.ndarray) -> float:
    """Errors are judged by their RMS, drift exponents by their median."""
    return float(np.median(values)) if metric == "drift_nu" else float(np.sqrt(np.mean(values**2)))


def compare(store: Store, run_a: str, run_b: str, alpha: float = 1e-3, max_change: float = 0.2,
            accuracy_alpha: float = 0.01) -> list[Comparison]:
    """B regressed on a metric when its distribution differs (p < alpha) and is worse by > max_change;
    on a validated network's accuracy when McNemar's paired test gives p < accuracy_alpha and B is worse."""
    store.manifest(run_a), store.manifest(run_b)  # both exist (and are run ids, not paths)
    a, b = _distributions(store, run_a), _distributions(store, run_b)
    shared = [m for m in a if m in b and len(a[m]) > 1 and len(b[m]) > 1]
    accuracy = _validation_comparisons(store, run_a, run_b, accuracy_alpha)
    if not shared and not accuracy:
        raise UsageError(f"runs {run_a} and {run_b} share no measured distribution to compare")
    results = accuracy
    for metric in shared:
        d, p = ks_two_sample(a[metric], b[metric])
        spread_a, spread_b = _spread(metric, a[metric]), _spread(metric, b[metric])
        worse = spread_b > spread_a * (1 + max_change)
        results.append(Comparison(metric, spread_a, spread_b, d, p, bool(p < alpha and worse)))
    return results
