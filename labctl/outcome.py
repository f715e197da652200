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


def acceptance_checks(ctx, limits: Acceptance) -> list[Check]:
    """The limits that apply to the steps that ran."""
    checks = []
    result = ctx.write_verify
    if result is not None:
        checks += [
            Check("converged_fraction", result.converged_fraction, limits.min_converged_fraction, ">="),
            Check("error_sigma_us", result.error_sigma_us, limits.max_error_sigma_us, "<="),
            Check("stuck_fraction", float(result.stuck.mean()), limits.max_stuck_fraction, "<="),
        ]
    elif ctx.health is not None:
        checks.append(Check("stuck_fraction", ctx.health.dead_fraction, limits.max_stuck_fraction, "<="))
    if ctx.readout_calibration is not None:
        residual = float(ctx.readout_calibration.residual_rms_lsb.mean())
        checks.append(Check("readout_residual_lsb", residual, limits.max_readout_residual_lsb, "<="))
    if ctx.mvm is not None:
        checks.append(Check("mvm_worst_error_fs", ctx.mvm.corrected["worst_fs"], limits.max_mvm_worst_error_fs, "<="))
    if ctx.drift_compensation is not None:
        checks.append(Check("drift_compensated_error_fs", ctx.drift_compensation.global_compensated["worst_fs"],
                            limits.max_drift_compensated_error_fs, "<="))
    return checks


@dataclass(frozen=True)
class CalibrationOutcome:
    run_id: str
    chip: str
    data_root: str
    result: WriteVerifyResult | None
    checks: list[Check]
    steps: dict[str, dict[str, Any]]
    readout_source: str
    wall_time_s: float
    temperature_k: float

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"run_id": self.run_id, "chip": self.chip}
        r = self.result
        if r is not None:
            summary.update({
                "cells": r.cells,
                "converged_fraction": r.converged_fraction,
                "converged_cells": int(r.converged.sum()),
                "stuck_cells": int(r.stuck.sum()),
                "unreachable_cells": int(r.unreachable.sum()),
                "pulses_per_cell_mean": float(r.pulses.mean()),
                "pulses_per_cell_max": int(r.pulses.max(initial=0)),
                "iterations": r.iterations,
                "tolerance_us": r.tolerance_us,
                "error_sigma_us": r.error_sigma_us,
                "error_max_us": r.max_abs_error_us,
            })
        summary.update({
            "readout": self.readout_source,
            "temperature_k": self.temperature_k,
            "wall_time_s": self.wall_time_s,
            "data": self.data_root,
            "steps": self.steps,
            "acceptance": [check.as_dict() for check in self.checks],
            "passed": self.passed,
        })
        return summary
