"""What a calibration achieved, judged against the protocol's acceptance limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calibration.write_verify import WriteVerifyResult
from labctl.protocol import Acceptance


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    limit: float
    comparison: str  # ">=" or "<="

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.comparison == ">=" else self.value <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "limit": self.limit,
                "comparison": self.comparison, "passed": self.passed}


def acceptance_checks(result: WriteVerifyResult, limits: Acceptance) -> list[Check]:
    return [
        Check("converged_fraction", result.converged_fraction, limits.min_converged_fraction, ">="),
        Check("error_sigma_us", result.error_sigma_us, limits.max_error_sigma_us, "<="),
        Check("stuck_fraction", float(result.stuck.mean()), limits.max_stuck_fraction, "<="),
    ]


@dataclass(frozen=True)
class CalibrationOutcome:
    run_id: str
    chip: str
    data_root: str
    result: WriteVerifyResult
    checks: list[Check]
    wall_time_s: float
    temperature_k: float

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def summary(self) -> dict[str, Any]:
        r = self.result
        return {
            "run_id": self.run_id,
            "chip": self.chip,
            "cells": r.cells,
            "converged_fraction": r.converged_fraction,
            "converged_cells": int(r.converged.sum()),
            "stuck_cells": int(r.stuck.sum()),
            "pulses_per_cell_mean": float(r.pulses.mean()),
            "pulses_per_cell_max": int(r.pulses.max(initial=0)),
            "iterations": r.iterations,
            "tolerance_us": r.tolerance_us,
            "error_sigma_us": r.error_sigma_us,
            "error_max_us": r.max_abs_error_us,
            "temperature_k": self.temperature_k,
            "wall_time_s": self.wall_time_s,
            "data": self.data_root,
            "acceptance": [check.as_dict() for check in self.checks],
            "passed": self.passed,
        }
