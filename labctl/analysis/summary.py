"""Printing a calibration's outcome for a person (tables) or a program (JSON)."""

from __future__ import annotations

import json
import math
from typing import Any

from labctl.runs.outcome import CalibrationOutcome


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


def _step_lines(step: str, figures: dict[str, Any]) -> str:
    if step == "settle":
        how = (f"settled in {figures['settle_s']:.0f} s" if figures["controller"]
               else "no temperature controller: as found")
        return f"chip at {figures['measured_k']:.2f} K for {figures['temperature_k']:g} K ({how}) before programming"
    if step == "health":
        text = f"{figures['dead_cells']} dead cells flagged, board sensor {figures['board_temperature_k']:.2f} K"
        if "controller_temperature_k" in figures:
            text += f", controller {figures['controller_temperature_k']:.2f} K"
        return text
    if step == "readout":
        if "skipped" in figures:
            return f"skipped: {figures['skipped']}"
        if "gain_min" not in figures:
            return f"from the {figures['source']}"
        shares = figures.get("split_half_shares")
        return (f"{figures['reference_levels']} cells per column against the SMU; gain "
                f"{figures['gain_min']:.4f}..{figures['gain_max']:.4f}, offset {figures['offset_min_lsb']:.2f}.."
                f"{figures['offset_max_lsb']:.2f} LSB, fit residual {figures['residual_rms_lsb']:.2f} LSB RMS"
                + (f" beside a noise floor of {figures['noise_floor_lsb']:.2f} (two looks at one cell)"
                   if "noise_floor_lsb" in figures else "")
                + (f"; each column keeps {100 * shares[0]:.0f} % of its own gain estimate and {100 * shares[1]:.0f} % "
                   "of its offset, the rest pooled (as two halves of the rows agree)" if shares is not None
                   else f"; one column's own fit ±{100 * figures['gain_uncertainty_max']:.2f} % gain at worst, pooled"
                   if figures.get("gain_uncertainty_max") is not None else ""))
    if step == "read_noise":
        return (f"{figures['reads']} reads: median σ {figures['median_sigma_us']:.3f} µS per read; per column "
                f"{figures['column_sigma_us_min']:.3f}..{figures['column_sigma_us_max']:.3f} µS")
    if step == "write_verify":
        pairs = ""
        if "pairs_stuck_cells" in figures:
            pairs = (f"; {figures['pairs_compensated']} of {figures['pairs_stuck_cells']} stuck cells compensated "
                     f"through their pair's partner"
                     + (f", {figures['pairs_uncompensated']} not (residual up to "
                        f"{figures['pairs_residual_max_us']:.2f} µS)" if figures["pairs_uncompensated"] else ""))
        return (f"{100 * figures['converged_fraction']:.2f} % converged in {figures['iterations']} iterations, "
                f"{figures['stuck_cells']} stuck, {figures['unreachable_cells']} unreachable, "
                f"σ {figures['error_sigma_us']:.3f} µS ({figures['readout']})" + pairs)
    if step == "refine":
        if "skipped" in figures:
            return f"skipped: {figures['skipped']}"
        rounds = "; ".join(f"{r['vectors']} MVMs, estimated error {r['estimated_rms_us']:.3f} µS RMS "
                           f"(±{r['estimate_sigma_us']:.3f}), {r['picked']} cells re-verified"
                           for r in figures["rounds"])
        return (f"{len(figures['rounds'])} round(s) from the MVM error: {rounds}; then "
                f"{100 * figures['converged_fraction']:.2f} % converged, σ {figures['error_sigma_us']:.3f} µS, "
                f"{figures['board_s']:.1f} s of board time")
    if step == "mvm":
        text = ""

        def pct(name: str) -> str:  # a figure this matrix leaves undefined is None in the JSON
            value = figures.get(name)
            return "n/a" if value is None else f"{100 * value:.2f} %"

        def times(a: str, b: str) -> str:
            top, bottom = figures.get(a), figures.get(b)
            return f"{top / bottom:.1f}x" if top is not None and bottom else "n/a"

        if "deployed_l2_mean" in figures and figures.get("deployed_as", "").startswith("signed"):
            text = (f"against the signed weights (held-out inputs): L2 error {pct('signed_l2_mean')} mean, "
                    f"{pct('signed_l2_worst')} worst vector, worst output {pct('signed_worst_output')} of the "
                    f"largest; noise floor {pct('signed_noise_floor_l2')} "
                    f"({times('signed_l2_mean', 'signed_noise_floor_l2')}). ")
        elif "deployed_l2_mean" in figures:
            text = (f"against the targets (held-out inputs): L2 error {pct('deployed_l2_mean')} mean, "
                    f"{pct('deployed_l2_worst')} worst vector, worst output {pct('deployed_worst_output')} of the "
                    f"largest; signed (column pairs) {pct('signed_l2_mean')}; noise floor {pct('noise_floor_l2')} "
                    f"({times('deployed_l2_mean', 'noise_floor_l2')})"
                    + (f"; without the stuck and unreachable cells' error {pct('without_defects_l2_mean')}"
                       if "without_defects_l2_mean" in figures else "") + ". ")
        if "mvm_gain" in figures:
            text += (f"MVM:GAIN {figures['mvm_gain']}"
                     + (f", {figures['clipped_outputs']} outputs clipped" if figures.get("clipped_outputs") else "")
                     + ". ")
        return (text + f"Self-consistency against the conductances read ({figures['vectors']} vectors): worst "
                f"{100 * figures['raw_worst_fs']:.3f} % FS raw, {100 * figures['corrected_worst_fs']:.3f} % FS "
                f"corrected (RMS {100 * figures['corrected_rms_fs']:.3f} %), FS {figures['full_scale_ua']:.1f} µA")
    if step == "maintain":
        ticks = figures["ticks"]
        nus = [t["nu"] for t in ticks if t.get("nu") is not None]
        return (f"{len(ticks)} looks every {figures['every_s'] / 3600:g} h to {figures['until_s'] / 3600:g} h: "
                f"L2 error against the targets {100 * figures['l2_start']:.2f} % at the start, at most "
                f"{100 * figures['l2_max']:.2f} % after, {100 * figures['l2_end']:.2f} % at the end (output scale "
                f"re-fitted at each look; with the first look's scale {100 * figures['stale_l2_end']:.2f} %); noise "
                f"floor {100 * figures['noise_floor_l2_end']:.2f} %; "
                + (f"{figures['refreshed_cells']} cells refreshed" if figures["refresh"] else "no refresh")
                + (f", ν {min(nus):.3f}..{max(nus):.3f}" if nus else "")
                + f"; {figures['board_s']:.1f} s of board time spent")
    if step == "network":
        looks = "; ".join(f"{100 * look['accuracy']:.2f} % [{100 * look['ci95'][0]:.1f}, {100 * look['ci95'][1]:.1f}] "
                          f"at {look['t_s'] / 3600:.3g} h" + (" (scales re-fitted)" if look["maintained"] else "")
                          for look in figures["looks"])
        tiles = ", ".join(_tile_text(tile) for tile in figures["tiles"])
        return (f"{figures['samples']} samples: on the chip {looks}; float model "
                f"{100 * figures['float_accuracy']:.2f} % [{100 * figures['float_ci95'][0]:.1f}, "
                f"{100 * figures['float_ci95'][1]:.1f}], at the chip's precision in software "
                f"{100 * figures['quantised_accuracy']:.2f} %; per tile L2 error against its weights {tiles}")
    if step == "solve":
        return _solve_text(figures)
    if step == "drift":
        if figures["nu_median"] is None:
            nu = "no working cell to fit ν to; "
        else:
            nu = (f"ν median {figures['nu_median']:.4f} (p10 {figures['nu_p10']:.4f}, p90 {figures['nu_p90']:.4f}), "
                  f"R² median {figures['r2_median']:.3f}; ")
        text = (f"{figures['reads']} reads x {len(figures['temperatures_k'])} temperature(s) over "
                f"{figures['duration_s'] / 3600:g} h each: {nu}"
                f"MVM worst {100 * figures['mvm_raw_worst_fs']:.2f} % FS raw, "
                f"{100 * figures['mvm_global_worst_fs']:.2f} % compensated")
        if figures["activation_ev"] is not None:
            accelerations = ", ".join(f"{a:.2f}" for a in figures["accelerations"])
            text += f"; acceleration {accelerations}, Ea {figures['activation_ev']:.3f} eV"
        return text
    return json.dumps(_finite(figures))


def _solve_text(figures: dict[str, Any]) -> str:
    def pct(name: str) -> str:
        return "n/a" if figures[name] is None else f"{100 * figures[name]:.2f} %"

    programmings = figures["programmings"]
    loops = "; ".join(
        f"matrix as programmed {100 * p['matrix_error']:.1f} % from the intended, offsets {p['offset_rms_mv']:.1f} mV "
        f"RMS, noise {p['noise_floor_codes']:.1f} codes, scales {p['scales']}" for p in programmings[:2])
    more = f" (+{len(programmings) - 2} more)" if len(programmings) > 2 else ""
    refine = (f", then {figures['refine_steps']} digital residual correction(s)" if figures["refine_steps"] else "")
    ratio = "n/a" if figures["chip_vs_digital"] is None else f"{figures['chip_vs_digital']:.2f}x"
    return (f"{figures['rows']}x{figures['rows']} system (condition {figures['condition_number']:.3g}), "
            f"{figures['columns']} right-hand sides, {figures['leaves']} programming(s) of the loop{refine}: "
            f"error against float64 {pct('chip_rel_error_mean')} mean, {pct('chip_rel_error_max')} worst; the "
            f"digital solver at the chip's precision {pct('digital_rel_error_mean')} mean ({ratio}); "
            f"{100 * figures['settled_fraction']:.0f} % settled; board time {1e3 * figures['board_s_per_rhs']:.2f} ms "
            f"per right-hand side ({figures['repeats']} solves averaged each), "
            f"{figures['programming_board_s']:.1f} s programming and calibrating. Loop: {loops}{more}")


def _tile_text(tile: dict[str, Any]) -> str:
    error = "n/a" if tile["signed_l2_mean"] is None else f"{100 * tile['signed_l2_mean']:.1f} %"
    where = (f"array {tile['chip_array']} of {tile['chip']}" if tile.get("chip") else f"array {tile['array']}")
    copies = f", {tile['copies']} pairs per weight" if tile.get("copies", 1) > 1 else ""
    return f"layer {tile['layer']} ({tile['rows']}x{tile['pairs']} on {where}{copies}) {error}"


def board_cost_line(cost: Any) -> str | None:
    """A run's board time and wire bytes in all (None when its steps did not record them)."""
    try:
        return (f"{cost['board_s']:.2f} s, {cost['wire_bytes'] / 1e3:,.0f} kB on the wire "
                f"(at least {cost['wire_s_at_link']:.2f} s of it on the link)")
    except (KeyError, TypeError, ValueError):
        return None


def cost_line(figures: Any) -> str:
    """The step's board time and wire bytes, with the floor the link's rate puts under the time."""
    cost = figures.get("cost") if isinstance(figures, dict) else None
    if not isinstance(cost, dict):
        return ""
    try:
        return (f" [dim]· board time {cost['board_s']:.2f} s, {cost['wire_bytes'] / 1e3:,.0f} kB on the wire "
                f"(≥ {cost['wire_s_at_link']:.2f} s at {cost['link_bytes_per_s'] / 1e6:g} MB/s)[/dim]")
    except (KeyError, TypeError, ValueError):
        return ""


def step_line(step: str, figures: Any) -> str:
    """A step's figures in one line; as JSON when they are not what this version writes
    (another version's manifest, or a hand-edited one)."""
    try:
        return _step_lines(step, figures)
    except (KeyError, TypeError, ValueError, AttributeError):
        return json.dumps(_finite(figures), default=str)


def render(outcome: CalibrationOutcome, console: Any) -> None:
    from rich.table import Table

    s = outcome.summary()
    table = Table(title=f"{s['protocol']} {s['chip']}  run {s['run_id']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    if "cells" in s:
        table.add_row("cells", f"{s['cells']}")
        table.add_row("converged", f"{100 * s['converged_fraction']:.2f} % of non-stuck cells "
                                    f"(|error| ≤ {s['tolerance_us']:g} µS)")
        table.add_row("stuck cells found", f"{s['stuck_cells']} (and {s['unreachable_cells']} with unreachable targets)")
        table.add_row("pulses per cell", f"mean {s['pulses_per_cell_mean']:.2f}, max {s['pulses_per_cell_max']}")
        table.add_row("error σ", f"{s['error_sigma_us']:.3f} µS (max |error| {s['error_max_us']:.3f} µS)")
    table.add_row("read-out", s["readout"])
    table.add_row("temperature", f"{s['temperature_k']:.2f} K")
    table.add_row("wall time", f"{s['wall_time_s']:.2f} s")
    if board_cost_line(s.get("board_cost")):
        table.add_row("board time", board_cost_line(s.get("board_cost")))
    if link_line(s.get("link")):
        table.add_row("link", link_line(s.get("link")))
    table.add_row("data", f"{s['data']}  (run={s['run_id']})")
    console.print(table)

    console.print(steps_table(s["steps"]))
    console.print(acceptance_table(s["acceptance"]))


def steps_table(steps: dict[str, dict[str, Any]], pending: list[str] | None = None) -> Any:
    """One line per step with its figures; ``pending`` steps are listed as not reached."""
    from rich.table import Table

    table = Table(title="steps", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for step, figures in steps.items():
        table.add_row(step, step_line(step, figures) + cost_line(figures))
    for step in pending or []:
        table.add_row(step, "[dim]not reached[/dim]")
    return table


def acceptance_table(checks: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="acceptance", title_justify="left")
    for column in ("limit", "value", "required", "result"):
        table.add_column(column)
    for check in checks:
        if not isinstance(check, dict):
            continue  # a hand-edited manifest: show what can be shown
        mark = {True: "[green]pass[/green]", False: "[red]FAIL[/red]"}.get(check.get("passed"), "?")
        table.add_row(str(check.get("name")), shown_number(check.get("value"), ".4g"),
                      f"{check.get('comparison')} {shown_number(check.get('limit'), 'g')}", mark)
    return table


def shown_number(value: Any, spec: str) -> str:
    """A number formatted, or whatever a hand-edited manifest holds there, as it is."""
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def _losses(stats: dict[str, Any]) -> int:
    return stats["lost_replies"] + stats["damaged_replies"] + stats["link_drops"]


def link_line(link: dict[str, Any] | None) -> str | None:
    """Why a run was slow, when the wire was: losses by instrument and the time they cost
    (None when nothing was lost, or the run predates the figures)."""
    if not link or not _losses(link):
        return None
    where = ", ".join(f"{name} {_losses(stats)}" for name, stats in link["by_instrument"].items() if _losses(stats))
    return (f"{link['lost_replies']} lost and {link['damaged_replies']} damaged replies, {link['link_drops']} link "
            f"drops ({where}); {link['retries']} retries; {link['time_lost_s']:.1f} s of the wall time lost to them "
            f"(timeout {link['timeout_s']:g} s)")
