"""What a calibration achieved, judged against the protocol's acceptance limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labctl_calibration.write_verify import WriteVerifyResult
from labctl.runs.protocol import Acceptance


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


def acceptance_checks(figures: dict[str, dict[str, Any]], limits: Acceptance) -> list[Check]:
    """The limits that apply to the steps that ran, judged on their recorded figures."""
    checks = []
    wv = figures.get("write_verify")
    if wv is not None:
        checks += [
            Check("converged_fraction", wv["converged_fraction"], limits.min_converged_fraction, ">="),
            Check("error_sigma_us", wv["error_sigma_us"], limits.max_error_sigma_us, "<="),
            Check("stuck_fraction", wv["stuck_cells"] / max(wv["cells"], 1), limits.max_stuck_fraction, "<="),
        ]
    elif "health" in figures:
        checks.append(Check("stuck_fraction", figures["health"]["dead_fraction"], limits.max_stuck_fraction, "<="))
    readout = figures.get("readout", {})
    if "residual_rms_lsb" in readout and limits.max_readout_residual_lsb is not None:
        checks.append(Check("readout_residual_lsb", readout["residual_rms_lsb"], limits.max_readout_residual_lsb, "<="))
    if "residual_vs_floor" in readout:
        checks.append(Check("readout_residual_vs_floor", readout["residual_vs_floor"],
                            limits.max_readout_residual_vs_floor, "<="))
    if "mvm" in figures:
        checks.append(Check("mvm_worst_error_fs", figures["mvm"]["corrected_worst_fs"],
                            limits.max_mvm_worst_error_fs, "<="))
    if "network" in figures:  # accuracy points lost against the float model, at once after programming
        checks.append(Check("network_accuracy_drop_points", -figures["network"]["chip_vs_float_points"],
                            limits.max_network_accuracy_drop_points, "<="))
    solve = figures.get("solve")
    if solve is not None:  # every column settled, and the loop within its bar of the digital solver
        checks.append(Check("solve_settled_fraction", solve["settled_fraction"], 1.0, ">="))
        if solve["chip_vs_digital"] is not None:
            checks.append(Check("solve_error_vs_digital", solve["chip_vs_digital"], limits.max_solve_error_vs_digital,
                                "<="))
    if "drift" in figures:
        checks.append(Check("drift_compensated_error_fs", figures["drift"]["mvm_global_worst_fs"],
                            limits.max_drift_compensated_error_fs, "<="))
    return checks


def board_cost(steps: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """The steps' board time and wire bytes added up (None when no step recorded them)."""
    costs = [figures["cost"] for figures in steps.values() if isinstance(figures, dict)
             and isinstance(figures.get("cost"), dict)]
    if not costs:
        return None
    return {key: float(sum(cost[key] for cost in costs)) for key in ("board_s", "wire_bytes", "wire_s_at_link")}


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
    protocol: str = "calibrate"
    link: dict[str, Any] | None = None  # what a flaky link cost (Rig.link_stats)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"run_id": self.run_id, "chip": self.chip, "protocol": self.protocol}
        wv = self.steps.get("write_verify")
        if wv is not None:
            summary.update({
                "cells": wv["cells"],
                "converged_fraction": wv["converged_fraction"],
                "converged_cells": wv["converged_cells"],
                "stuck_cells": wv["stuck_cells"],
                "unreachable_cells": wv["unreachable_cells"],
                "pulses_per_cell_mean": wv["pulses_per_cell_mean"],
                "pulses_per_cell_max": wv["pulses_per_cell_max"],
                "iterations": wv["iterations"],
                "tolerance_us": wv["tolerance_us"],
                "error_sigma_us": wv["error_sigma_us"],
                "error_max_us": wv["error_max_us"],
            })
        summary.update({
            "readout": self.readout_source,
            "temperature_k": self.temperature_k,
            "wall_time_s": self.wall_time_s,
            "board_cost": board_cost(self.steps),
            "link": self.link,
            "data": self.data_root,
            "steps": self.steps,
            "acceptance": [check.as_dict() for check in self.checks],
            "passed": self.passed,
        })
        return summary
