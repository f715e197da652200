"""Commands that read runs back: runs list/show, report, compare, export-model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from labctl.cli.options import DataOption, RunIdArgument
from labctl.cli.output import fail, reported


def runs_list(
    chip: Annotated[Optional[str], typer.Option("--chip", metavar="NAME", help="Only this chip's runs.")] = None,
    since: Annotated[
        Optional[str], typer.Option("--since", metavar="DATE", help="Only runs started since (YYYY-MM-DD[THH:MM]).")
    ] = None,
    data: DataOption = None,
) -> None:
    """List runs: id, chip, protocol, status, start, end, passed."""
    from datetime import datetime

    from labctl import open_store

    def table():
        try:
            start = datetime.fromisoformat(since) if since else None
        except ValueError:
            from labctl.errors import UsageError

            raise UsageError(f"--since {since!r}: expected a date such as 2026-11-23 or 2026-11-23T22:00") from None
        return open_store(data).runs(chip=chip, since=start)

    frame = reported(table)
    if frame.empty:
        typer.echo("no runs")
        return
    rows = [("RUN", "CHIP", "PROTOCOL", "STATUS", "STARTED (UTC)", "ENDED", "RESULT")]
    for row in frame.itertuples():
        ended = "" if row.ended_utc is None or str(row.ended_utc) == "NaT" else f"{row.ended_utc:%H:%M:%S}"
        rows.append(
            (
                row.run_id,
                row.chip,
                row.protocol or "-",
                row.status or "-",
                f"{row.started_utc:%Y-%m-%d %H:%M:%S}",
                ended,
                {True: "passed", False: "FAILED"}.get(row.passed, "-"),
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(str(value).ljust(width) for value, width in zip(r, widths)).rstrip())


def runs_show(
    run_id: RunIdArgument,
    data: DataOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The whole manifest as JSON (provenance, protocol, every figure).")
    ] = False,
) -> None:
    """A run's summary: chip, protocol, status (and why it failed), steps, acceptance, provenance."""
    import json

    from labctl import open_store

    def manifest():
        store = open_store(data)
        return store.manifest(store.resolve(run_id))

    found = reported(manifest)
    if as_json:
        found.get("protocol", {}).pop("content", None)
        typer.echo(json.dumps(found, indent=2))
        return
    from rich.console import Console

    from labctl.analysis.run_view import render_manifest

    render_manifest(found, Console())


def export_model(
    run_id: RunIdArgument,
    fmt: Annotated[str, typer.Option("--format", metavar="json|aihwkit",
                                     help="json (labctl's noise model) or aihwkit (PCMLikeNoiseModel's arguments).")
                   ] = "json",
    out: Annotated[
        Optional[Path], typer.Option("--out", metavar="PATH", help="Write to this file instead of stdout.")
    ] = None,
    data: DataOption = None,
) -> None:
    """Export a chip's measured noise model (programming error, drift, read noise, stuck rate, ADC) for training."""
    import json

    from labctl import open_store
    from labctl.analysis.statistics import noise_model

    if fmt not in ("json", "aihwkit"):
        fail(f"--format {fmt!r}: choose json or aihwkit", 2)

    def export():
        store = open_store(data)
        found = store.resolve(run_id)
        measured = noise_model(store, found)
        if fmt == "aihwkit":
            from labctl.analysis.statistics import aihwkit_inputs
            from labctl.analysis.aihwkit_export import aihwkit_model

            return measured, aihwkit_model(measured, *aihwkit_inputs(store, found))
        return measured, measured

    model, written = reported(export)
    run_id = model["run_id"]
    if model["run_status"] != "completed" or model["run_passed"] is False:
        state = "missed its acceptance" if model["run_status"] == "completed" else f"is {model['run_status']}"
        typer.echo(f"labctl: warning: run {run_id} {state}: its statistics may not describe the chip", err=True)
    text = json.dumps(written, indent=2)
    if out is None:
        typer.echo(text)
    else:
        try:
            out.write_text(text + "\n")
        except OSError as err:
            fail(f"--out {str(out)!r}: cannot write: {err.strerror or err}", 2)
        typer.echo(f"noise model of run {run_id} written to {out}")


def report(
    run_id: RunIdArgument,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            metavar="PATH",
            help="Directory [default: reports/RUN beside runs/ in a local store, ./reports/RUN for a remote one].",
        ),
    ] = None,
    data: DataOption = None,
) -> None:
    """Write PNG plots and an HTML page of a run: maps, errors, pulses, drift, MVM, summary, provenance."""
    from labctl import open_store
    from labctl.analysis.report import write_report

    def report_run() -> Path:
        store = open_store(data)
        found = store.resolve(run_id)
        default = Path("reports") / found if store.fs.remote else Path(store.fs.base) / "reports" / found
        return write_report(store, found, out or default)

    page = reported(report_run)
    typer.echo(f"report written to {page}")


def compare(
    run_a: Annotated[
        str, typer.Argument(metavar="RUN_A", help="Baseline run (id, unique prefix or tail, or 'latest').")
    ],
    run_b: Annotated[
        str, typer.Argument(metavar="RUN_B", help="Run to check against it (id, unique prefix or tail, or 'latest').")
    ],
    alpha: Annotated[float, typer.Option("--alpha", metavar="P", help="Significance level of the KS tests.")] = 1e-3,
    max_change: Annotated[
        float, typer.Option("--max-change", metavar="FRACTION", help="Tolerated relative worsening.")
    ] = 0.2,
    accuracy_alpha: Annotated[
        float, typer.Option("--accuracy-alpha", metavar="P", help="Significance level of McNemar's paired test "
                            "on validated accuracy.")
    ] = 0.01,
    data: DataOption = None,
) -> None:
    """Compare two runs' distributions (programming error, ν, MVM error) with two-sample KS tests,
    and validated networks' accuracy, sample by sample, with McNemar's exact test."""
    from labctl import open_store
    from labctl.analysis.statistics import compare as compare_runs

    for name, level in (("--alpha", alpha), ("--accuracy-alpha", accuracy_alpha)):
        if not 0 < level < 1:
            fail(f"{name} {level:g}: a significance level is between 0 and 1 (exclusive)", 2)
    if not max_change >= 0:
        fail(f"--max-change {max_change:g}: must be 0 or more", 2)

    def compared():
        store = open_store(data)
        first, second = store.resolve(run_a), store.resolve(run_b)
        shapes = [store.manifest(found).get("chip_spec", {}).get("geometry") for found in (first, second)]
        if shapes[0] and shapes[1] and shapes[0] != shapes[1]:
            typer.echo(
                f"labctl: warning: run {first} is {shapes[0][1]}x{shapes[0][2]} and run {second} "
                f"{shapes[1][1]}x{shapes[1][2]}: their distributions are compared, not their cells",
                err=True,
            )
        return compare_runs(store, first, second, alpha, max_change, accuracy_alpha)

    results = reported(compared)
    typer.echo(f"{'metric':<22}{'A':>10}{'B':>10}{'change':>9}{'stat':>8}{'p':>10}  test     verdict")
    for r in results:
        verdict = "REGRESSED" if r.regressed else "ok"
        typer.echo(
            f"{r.metric:<22}{r.spread_a:>10.4g}{r.spread_b:>10.4g}{100 * r.change:>8.1f}%"
            f"{r.ks:>8.3f}{r.p_value:>10.2g}  {r.test:<8} {verdict}"
        )
    if any(r.regressed for r in results):
        raise typer.Exit(1)

