"""Printing a calibration's outcome for a person (a table) or a program (JSON)."""

from __future__ import annotations

import json
import math
from typing import Any

from labctl.outcome import CalibrationOutcome


def as_json(outcome: CalibrationOutcome) -> str:
    return json.dumps(_finite(outcome.summary()), indent=2)


def _finite(value: Any) -> Any:
    """JSON has no NaN: report it as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def render(outcome: CalibrationOutcome, console: Any) -> None:
    from rich.table import Table

    s = outcome.summary()
    table = Table(title=f"calibrate {s['chip']}  run {s['run_id']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("cells", f"{s['cells']}")
    table.add_row("converged", f"{100 * s['converged_fraction']:.2f} % of non-stuck cells "
                                f"(|error| ≤ {s['tolerance_us']:g} µS)")
    table.add_row("stuck cells found", f"{s['stuck_cells']}")
    table.add_row("pulses per cell", f"mean {s['pulses_per_cell_mean']:.2f}, max {s['pulses_per_cell_max']}")
    table.add_row("error σ", f"{s['error_sigma_us']:.3f} µS (max |error| {s['error_max_us']:.3f} µS, "
                             "as read by the board)")
    table.add_row("iterations", f"{s['iterations']}")
    table.add_row("temperature", f"{s['temperature_k']:.2f} K")
    table.add_row("wall time", f"{s['wall_time_s']:.2f} s")
    table.add_row("data", f"{s['data']}  (run={s['run_id']})")
    console.print(table)

    limits = Table(title="acceptance", title_justify="left")
    for column in ("limit", "value", "required", "result"):
        limits.add_column(column)
    for check in outcome.checks:
        mark = "[green]pass[/green]" if check.passed else "[red]FAIL[/red]"
        limits.add_row(check.name, f"{check.value:.4g}", f"{check.comparison} {check.limit:g}", mark)
    console.print(limits)
