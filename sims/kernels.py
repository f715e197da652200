"""Which implementation of the pulse's element-wise work a twin runs.

``sims.fused`` (compiled with numba, the ``fast-twin`` extra) when it can be imported, the
numpy path of ``sims.physics`` otherwise; both give the same chip. ``LABCTL_TWIN_KERNELS``
chooses: ``auto`` (the default), ``numpy`` (always the reference path), ``numba`` (the
compiled loops, failing loudly if numba is missing). A twin reads it once, when it is built,
and keeps that path.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

import numpy as np

from labctl_sims.presets import DeviceParams

CHOICE_VARIABLE = "LABCTL_TWIN_KERNELS"
CHOICES = ("auto", "numpy", "numba")
POLYNOMIAL_TERMS = 5  # the σ laws' terms the loops evaluate (a preset with more takes the numpy path)


def fused() -> ModuleType | None:
    """The compiled loops, or None where the numpy path is to run."""
    return _fused(os.environ.get(CHOICE_VARIABLE, "auto").strip().lower() or "auto")


@lru_cache(maxsize=None)
def _fused(choice: str) -> ModuleType | None:
    if choice not in CHOICES:
        raise ValueError(f"{CHOICE_VARIABLE}={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice == "numpy":
        return None
    try:
        from labctl_sims import fused as module
    except ImportError as missing:
        if choice == "numba":
            raise ImportError(f"{CHOICE_VARIABLE}=numba needs numba: pip install 'labctl[fast-twin]'") from missing
        return None  # not installed: the numpy path, as documented
    except Exception as broken:  # installed but unusable (a numba built for another numpy, a missing LLVM)
        if choice == "numba":
            raise
        warnings.warn(f"the twin's compiled pulse loops are unavailable ({type(broken).__name__}: {broken}); "
                      f"pulses take the numpy path (the same chip, slower)", RuntimeWarning, stacklevel=3)
        return None
    return module


def _f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


@dataclass(frozen=True)
class FusedConstants:
    """A preset's numbers as the compiled loops take them, rounded to float32 exactly where
    numpy rounds them (a Python float meets a float32 array as a float32)."""

    pulse: tuple[np.ndarray, np.ndarray, np.ndarray]  # program_cells' consts, wide consts, σ polynomial
    store: np.ndarray  # store_programmed's consts
    noise_amplitude: tuple[np.float32, np.float32, np.float32]  # read_noise_q's a, cap, scale
    relaxation: tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]  # τs, profile's denominator, σ laws

    @staticmethod
    def shrink_by_count(p: DeviceParams, counts: int) -> np.ndarray:
        """``float32(k) ** -exponent`` for k < ``counts``, as numpy's power gives it (k = 0: inf, never used)."""
        with np.errstate(divide="ignore"):
            return np.arange(counts, dtype=np.float32) ** -p.relaxation_iteration_exponent

    @staticmethod
    def fit(p: DeviceParams) -> bool:
        """Whether the loops take this preset's laws: polynomials of at most five terms."""
        return max(len(p.prog_coeff_us), len(p.relaxation_coeff_us or ())) <= POLYNOMIAL_TERMS

    @classmethod
    def of(cls, p: DeviceParams) -> FusedConstants:
        rho = p.nu_cycle_correlation
        a, b, cap = p.read_noise_law
        empty, full = p.conduction_activation_ev
        log_q_floor = np.log(np.full(16, 1e-3, dtype=np.float32))[0]  # as numpy's array log has it
        pulse = _f32(p.prog_floor**2, p.g_min_us, p.g_max_us, p.g_max_us / p.prog_coeff_g_max_us,
                     p.prog_noise_scale, p.reset_melt_mv, 1.0 / p.g_max_us, 1e-7)
        wide = np.array([p.window_loss_per_pulse, p.window_loss_max, 1.0 + (p.reset_noise_factor - 1.0)])
        store = _f32(np.sqrt(1.0 - rho * rho), rho, *p.nu_mean_law, *p.nu_std_law, p.drift_scale, log_q_floor, -b,
                     empty, full - empty, p.g_max_us)
        coefficients = _padded(p.prog_coeff_us)
        s0, s1 = p.relaxation_fast_scale
        relaxation = (_f32(p.relaxation_tau_s, p.relaxation_fast_tau_s),
                      float(np.log1p(p.relaxation_reference_s / p.relaxation_tau_s)),
                      _f32(p.g_max_us, p.g_max_us / p.prog_coeff_g_max_us, s0, s1, p.relaxation_slow_scale),
                      coefficients, _padded(p.relaxation_coeff_us or ()))
        return cls((pulse, wide, coefficients), store,
                   (np.float32(a), np.float32(cap), np.float32(p.read_noise_scale)), relaxation)


def _padded(coefficients: tuple[float, ...]) -> np.ndarray:
    """A polynomial's coefficients, lowest order first, padded with zeros to the five terms the
    loops take (Horner's rule over the zeros gives numpy's float32 result)."""
    return _f32(*coefficients, *[0.0] * (POLYNOMIAL_TERMS - len(coefficients)))
