"""The chip's temperature: a first-order lag toward the controller's set point."""

from __future__ import annotations

import math
from collections.abc import Callable

SUBSTEPS = 32


class ThermalModel:
    def __init__(self, ambient_k: float, tau_s: float) -> None:
        self.temperature_k = ambient_k
        self.set_point_k = ambient_k
        self.tau_s = tau_s

    def advance(self, seconds: float, rate: Callable[[float], float]) -> float:
        """Move ``seconds`` forward; return ∫ rate(T(t)) dt over them.

        The integral is what a temperature-accelerated process (drift) experiences.
        The transient (the first few τ) is integrated with the midpoint rule on the
        exact exponential approach; once settled, the rate is constant.
        """
        if seconds <= 0:
            return 0.0
        start, target = self.temperature_k, self.set_point_k
        if abs(start - target) < 1e-9:
            return rate(target) * seconds
        transient = min(seconds, 8 * self.tau_s)
        dt = transient / SUBSTEPS
        integral = 0.0
        for k in range(SUBSTEPS):
            t_mid = (k + 0.5) * dt
            integral += rate(target + (start - target) * math.exp(-t_mid / self.tau_s)) * dt
        self.temperature_k = target + (start - target) * math.exp(-seconds / self.tau_s)
        return integral + rate(target) * (seconds - transient)
