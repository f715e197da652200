"""``labctl report``: PNG plots and an HTML page of one run, from the store alone."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from labctl.errors import UsageError
from labctl.store.query import Store
from labctl.analysis.summary import shown_number


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _optional(store: Store, table: str, run_id: str, columns: list[str] | None = None):
    try:
        frame = store.table(table, run=run_id, columns=columns)
    except UsageError:
        return None
    return frame if len(frame) else None


def _save(plt, fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def _cell_plots(plt, cells, out: Path, tolerance_us: float | None) -> list[tuple[str, str]]:
    rows, cols = int(cells["row"].max()) + 1, int(cells["col"].max()) + 1
    grid = np.full((rows, cols, 2), np.nan)
    grid[cells["row"], cells["col"], 0] = cells["target_us"]
    grid[cells["row"], cells["col"], 1] = cells["achieved_us"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for axis, index, title in ((axes[0], 0, "target (µS)"), (axes[1], 1, "achieved (µS)")):
        image = axis.imshow(grid[:, :, index], cmap="viridis", vmin=0, vmax=np.nanmax(grid))
        axis.set_title(title)
        axis.set_xlabel("column")
        axis.set_ylabel("row")
        fig.colorbar(image, ax=axis, label="G (µS)")
    plots = [("Conductance map: target and achieved", _save(plt, fig, out / "conductance_map.png"))]
    working = cells[~cells["stuck"]]
    fig, axis = plt.subplots(figsize=(6, 4))
    axis.hist(working["achieved_us"] - working["target_us"], bins=80)
    if tolerance_us is not None:
        for sign in (-1, 1):
            axis.axvline(sign * tolerance_us, color="tab:red", ls="--", lw=1,
                         label=f"tolerance ±{tolerance_us:g} µS" if sign > 0 else None)
        axis.legend()
    axis.set_xlabel("achieved − target (µS)")
    axis.set_ylabel("cells")
    plots.append(("Programming error (cells not stuck)", _save(plt, fig, out / "error_histogram.png")))
    fig, axis = plt.subplots(figsize=(6, 4))
    axis.hist(cells["pulses"], bins=np.arange(cells["pulses"].max() + 2) - 0.5)
    axis.set_xlabel("pulses per cell")
    axis.set_ylabel("cells")
    plots.append(("Pulses per cell", _save(plt, fig, out / "pulses_per_cell.png")))
    return plots


def _drift_plots(plt, store: Store, run_id: str, fits, out: Path) -> list[tuple[str, str]]:
    rows, cols = int(fits["row"].max()) + 1, int(fits["col"].max()) + 1
    grid = np.full((rows, cols), np.nan)
    grid[fits["row"], fits["col"]] = fits["nu"]
    good = fits.loc[fits["r2"] > 0.5, "nu"].to_numpy()
    low, high = (np.percentile(good, [1, 99]) if good.size else (np.nanmin(grid), np.nanmax(grid)))
    low = max(float(low), 0.0)  # a few negative ν (noise on stuck or flat cells) must not stretch the scale
    clipped = int(((grid < low) | (grid > high)).sum())
    fig, axis = plt.subplots(figsize=(5.5, 4.5))
    image = axis.imshow(grid, cmap="magma", vmin=low, vmax=high)
    fig.colorbar(image, ax=axis, label="ν", extend="both")
    axis.set_xlabel("column")
    axis.set_ylabel("row")
    axis.set_title(f"drift exponent ν (1st-99th percentile; {clipped} cells beyond)")
    plots = [("Drift exponent map", _save(plt, fig, out / "nu_map.png"))]
    try:
        programmed = json.loads(store.run_file(run_id, "drift.json") or b"{}")["programmed_s"]
        run_start = json.loads(store.run_file(run_id, "state.json") or b"{}")["t0_s"]
    except (ValueError, KeyError):
        return plots
    manifest = store.manifest(run_id)
    fit_start = manifest["protocol"]["effective"]["drift"]["fit_start_s"]
    reads = store.table("reads", run=run_id, columns=["phase", "t_s", "row", "col", "g_us"])
    phases = [p for p in reads["phase"].unique() if str(p).startswith("drift-")]
    phases.sort(key=lambda phase: reads.loc[reads["phase"] == phase, "t_s"].min())  # in the order they ran
    if not phases:
        return plots
    picks = fits[fits["r2"] > 0.5]
    picks = picks.sample(n=min(8, len(picks)), random_state=0)
    colours = [plt.get_cmap("tab10")(k % 10) for k in range(len(phases))]
    fig, axis = plt.subplots(figsize=(7, 4.8))
    for k, phase in enumerate(phases):
        segment = reads[reads["phase"] == phase]
        for n, pick in enumerate(picks.itertuples()):
            cell = segment[(segment["row"] == pick.row) & (segment["col"] == pick.col)]
            since = cell["t_s"] + run_start - programmed
            axis.loglog(since, cell["g_us"], ".", ms=3, color=colours[k],
                        label=f"{phase.removeprefix('drift-')} reads" if n == 0 else None)
            if k == 0:
                fitted = since[since >= fit_start]
                axis.loglog(fitted, pick.g0_us * (fitted / fit_start) ** -pick.nu, "-", color="black", lw=0.7,
                            label="power-law fit" if n == 0 else None)
    axis.set_xlabel("time since programming (s)")
    axis.set_ylabel("G (µS)")
    axis.set_title(f"drift of {len(picks)} cells at {len(phases)} temperature(s)")
    axis.legend(fontsize=8)
    plots.append(("Drift curves at every temperature, with the power-law fits of the first",
                  _save(plt, fig, out / "drift_curves.png")))
    return plots


def _mvm_plot(plt, mvm, out: Path, full_scale_ua: float | None) -> list[tuple[str, str]]:
    held = mvm[mvm["held_out"]]
    deployed = "intended_ua" in held.columns  # runs of earlier versions have only the self-consistency
    fig, axes = plt.subplots(1, 3 if deployed else 2, figsize=(15 if deployed else 10, 4))
    if deployed:
        axes[2].plot(held["intended_ua"], held["measured_ua"], ".", ms=2)
        axes[2].set_xlabel("intended: the targets' output (µA)")
        axes[2].set_ylabel("measured (µA)")
        axes[2].set_title("against what was asked")
    axes[0].plot(held["expected_ua"], held["measured_ua"], ".", ms=2)
    axes[0].set_xlabel("expected from the conductances read (µA)")
    axes[0].set_ylabel("measured (µA)")
    axes[0].set_title("self-consistency")
    error = held["corrected_ua"] - held["expected_ua"]
    if full_scale_ua:  # the same unit as the summary's figures
        axes[1].hist(100 * error / full_scale_ua, bins=60)
        axes[1].set_xlabel(f"corrected − expected (% of full scale, {full_scale_ua:.1f} µA)")
    else:
        axes[1].hist(error, bins=60)
        axes[1].set_xlabel("corrected − expected (µA)")
    axes[1].set_ylabel("outputs")
    return [("MVM (held-out inputs): self-consistency against the conductances read, its corrected error, and "
             "the outputs against what the targets compute",
             _save(plt, fig, out / "mvm_error.png"))]


def _maintain_plot(plt, looks, out: Path) -> list[tuple[str, str]]:
    looks = looks.sort_values("tick")
    hours = looks["t_s"] / 3600.0
    fig, axis = plt.subplots(figsize=(7, 4.2))
    axis.plot(hours, 100 * looks["l2_mean"], "o-", label="output scale re-fitted at each look")
    axis.plot(hours, 100 * looks["stale_l2_mean"], "s--", label="with the first look's scale")
    axis.plot(hours, 100 * looks["noise_floor_l2"], ":", label="noise floor (two MVMs of one input)")
    axis.set_xlabel("time since the maintenance began (h)")
    axis.set_ylabel("L2 error against the targets (%)")
    axis.legend()
    refreshed = int(looks["refreshed"].sum())
    axis.set_title(f"maintenance: {refreshed} cells refreshed")
    return [("Maintenance: the deployed matrix's error at each look", _save(plt, fig, out / "maintain.png"))]


def _validation_plot(plt, rows, out: Path) -> list[tuple[str, str]]:
    from labctl_calibration.network import wilson_interval

    looks = rows.groupby("look").agg(t_s=("t_s", "first"), correct=("correct", "sum"), n=("correct", "size"))
    labels = rows[rows["look"] == rows["look"].min()]
    float_accuracy = float((labels["float_predicted"] == labels["label"]).mean())
    quantised_accuracy = float((labels["quantised_predicted"] == labels["label"]).mean())
    hours = looks["t_s"].to_numpy() / 3600.0
    accuracy = 100 * looks["correct"].to_numpy() / looks["n"].to_numpy()
    bounds = np.array([wilson_interval(int(c), int(n)) for c, n in zip(looks["correct"], looks["n"], strict=True)])
    fig, axis = plt.subplots(figsize=(7, 4.2))
    axis.errorbar(hours, accuracy, yerr=[accuracy - 100 * bounds[:, 0], 100 * bounds[:, 1] - accuracy], fmt="o-",
                  capsize=3, label="on the chip (95 % interval)")
    axis.axhline(100 * float_accuracy, ls="--", color="k", label="float model")
    axis.axhline(100 * quantised_accuracy, ls=":", color="grey", label="the chip's precision in software")
    axis.set_xlabel("time since programming (h)")
    axis.set_ylabel("accuracy (%)")
    axis.legend()
    return [("Network on the chip: accuracy at each look", _save(plt, fig, out / "validation.png"))]


def _solve_plot(plt, rows, out: Path) -> list[tuple[str, str]]:
    settled = rows[rows["settled"]]
    fig, axis = plt.subplots(figsize=(7, 4.2))
    axis.plot(settled["column"], 100 * settled["chip_rel_error"], "o", label="closed loop")
    axis.plot(settled["column"], 100 * settled["digital_rel_error"], "x", label="digital solver at the chip's precision")
    failed = rows[~rows["settled"]]
    for column in failed["column"]:
        axis.axvline(column, color="r", alpha=0.3)
    axis.set_xlabel("right-hand side (column of B)")
    axis.set_ylabel("error against float64 (%)")
    axis.set_title(f"{int(rows['rows'].iloc[0])} rows, {int(rows['leaves'].iloc[0])} programming(s), "
                   f"{len(failed)} not settled (red)")
    axis.legend()
    return [("Closed-loop solve: error per right-hand side", _save(plt, fig, out / "solve.png"))]


def write_report(store: Store, run_id: str, out: Path) -> Path:
    manifest = store.manifest(run_id)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {str(out)!r}: cannot make the report directory: "
                         f"{err.strerror or err}") from None
    plt = _figure()
    plots: list[tuple[str, str]] = []
    steps = manifest.get("steps", {}) if isinstance(manifest.get("steps"), dict) else {}
    cells = _optional(store, "cells", run_id)
    if cells is not None:
        plots += _cell_plots(plt, cells, out, steps.get("write_verify", {}).get("tolerance_us"))
    fits = _optional(store, "drift", run_id)
    if fits is not None:
        plots += _drift_plots(plt, store, run_id, fits, out)
    mvm = _optional(store, "mvm", run_id)
    if mvm is not None:
        plots += _mvm_plot(plt, mvm, out, steps.get("mvm", {}).get("full_scale_ua"))
    looks = _optional(store, "maintain", run_id)
    if looks is not None:
        plots += _maintain_plot(plt, looks, out)
    validation = _optional(store, "validation", run_id)
    if validation is not None:
        plots += _validation_plot(plt, validation, out)
    solved = _optional(store, "solve", run_id)
    if solved is not None:
        plots += _solve_plot(plt, solved, out)
    page = out / "index.html"
    page.write_text(_html(manifest, plots), encoding="utf-8")
    return page


def _list_of_dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _shown(value: Any) -> str:
    """Numbers as a person reads them: 4 significant figures, not 0.9981912382353842."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.4g}"


def _verdict(passed: Any) -> str:
    if passed is True:
        return '<span class="pass">pass</span>'
    return '<span class="fail">FAIL</span>' if passed is False else "-"


def _html(manifest: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    from labctl.store.query import observed_status
    from labctl.analysis.summary import step_line

    e = html.escape
    summary = manifest.get("summary") if isinstance(manifest.get("summary"), dict) else {}
    facts = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
    rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(_shown(v))}</td></tr>" for k, v in facts.items())
    status = str(observed_status(manifest))
    verdict = {None: "", True: ", acceptance met", False: ", acceptance NOT met"}.get(manifest.get("passed"), "")
    state = f'<p class="{"pass" if manifest.get("passed") else "fail"}">status: {e(status)}{verdict}</p>'
    if manifest.get("error"):
        state += f'<p class="fail">reason: {e(str(manifest["error"]))}</p>'
    checks = "".join(
        f"<tr><td>{e(str(c.get('name')))}</td><td>{e(shown_number(c.get('value'), '.4g'))}</td>"
        f"<td>{e(str(c.get('comparison')))} {e(shown_number(c.get('limit'), 'g'))}</td>"
        f"<td>{_verdict(c.get('passed'))}</td></tr>"
        for c in _list_of_dicts(manifest.get("acceptance")))
    acceptance = (f"<table><tr><th>limit</th><th>value</th><th>required</th><th>result</th></tr>{checks}</table>"
                  if checks else "<p>not judged: the run did not finish</p>")
    done = manifest.get("steps", {}) if isinstance(manifest.get("steps"), dict) else {}
    planned = manifest.get("protocol", {}).get("effective", {}).get("steps", [])
    steps = ""
    for name, figures in done.items():
        steps += f"<tr><th>{e(name)}</th><td>{e(step_line(name, figures))}</td></tr>"
    steps += "".join(f'<tr><th>{e(name)}</th><td class="dim">not reached</td></tr>'
                     for name in planned if name not in done)
    figures = "".join(f'<figure><img src="{e(name)}" alt="{e(title)}"><figcaption>{e(title)}</figcaption></figure>'
                      for title, name in plots) or "<p>no measurements to plot</p>"
    provenance = {k: manifest.get(k) for k in ("labctl_version", "host", "user", "python", "platform", "seed",
                                                "preset", "chip_identity", "started_utc", "ended_utc", "status")}
    provenance["protocol"] = {k: v for k, v in manifest.get("protocol", {}).items() if k in ("source", "sha256")}
    provenance["instruments"] = {n: i.get("idn") for n, i in manifest.get("instruments", {}).items()}
    protocol = manifest.get("protocol", {}).get("effective", {}).get("name", "run")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>labctl {e(str(protocol))} {e(manifest['run_id'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} img{{max-width:100%}}
.pass{{color:#1a7f37;font-weight:bold}} .fail{{color:#cf222e;font-weight:bold}} .dim{{color:#888}}</style></head>
<body><h1>{e(str(protocol))} {e(str(manifest.get('chip')))}: run {e(manifest['run_id'])}</h1>
{state}
<h2>Summary</h2><table>{rows}</table>
<h2>Acceptance</h2>{acceptance}
<h2>Steps</h2><table>{steps}</table>
<h2>Plots</h2>{figures}
<h2>Provenance</h2><pre>{e(json.dumps(provenance, indent=1, default=str))}</pre>
</body></html>
"""
