"""The chip's temperature: a first-order lag toward the controller's set point.

The controller's set point may ramp (K/min) toward a new value, and its heater range
bounds how far above ambient it can heat (range 0: heater off).
"""

from __future__ import annotations

import math
from collections.abc import Callable

SUBSTEPS = 32
HEATER_HEADROOM_K = {0: 0.0, 1: 30.0, 2: 100.0, 3: 250.0}  # Lake Shore 335 ranges off/low/medium/high


class ThermalModel:
    def __init__(self, ambient_k: float, tau_s: float) -> None:
        self.ambient_k = ambient_k
        self.temperature_k = ambient_k
        self.set_point_k = ambient_k  # where the controller aims now (moves while ramping)
        self.final_set_point_k = ambient_k
        self.ramp_k_per_s: float | None = None
        self.heater_range = 3
        self.tau_s = tau_s

    def set_target(self, kelvin: float) -> None:
        """A new set point: reached at the ramp rate if ramping is on, at once otherwise."""
        self.final_set_point_k = kelvin
        if self.ramp_k_per_s is None:
            self.set_point_k = kelvin

    def _effective_target(self, set_point: float) -> float:
        return min(set_point, self.ambient_k + HEATER_HEADROOM_K[self.heater_range])

    def advance(self, seconds: float, rate: Callable[[float], float]) -> float:
        """Move ``seconds`` forward; return ∫ rate(T(t)) dt over them.

        The integral is what a temperature-accelerated process (drift) experiences.
        While the set point ramps, time is cut into steps short against the lag; a
        transient is integrated with the midpoint rule on the exact exponential
        approach; once settled, the rate is constant.
        """
        integral = 0.0
        while seconds > 0:
            if self.ramp_k_per_s is not None and self.set_point_k != self.final_set_point_k:
                step = min(seconds, self.tau_s / 8)
                gap = self.final_set_point_k - self.set_point_k
                move = math.copysign(min(abs(gap), self.ramp_k_per_s * step), gap)
                self.set_point_k += move / 2
                integral += self._approach(step, rate)
                self.set_point_k += move / 2
            else:
                step = seconds
                integral += self._approach(step, rate)
            seconds -= step
        return integral

    def _approach(self, seconds: float, rate: Callable[[float], float]) -> float:
        start, target = self.temperature_k, self._effective_target(self.set_point_k)
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
