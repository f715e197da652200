"""Commands for a lab of rigs: a Dask worker per rig host, campaigns over them, the fleet's figures.

Dask is imported only here, and only when one of these commands runs (``pip install
'labctl[dask]'``); without it each says so in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from labctl.cli.options import ConfigOption, DataOption, JsonOption, QuietOption
from labctl.cli.output import fail, reported

SchedulerOption = Annotated[
    Optional[str],
    typer.Option("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://10.0.0.2:8786 "
                 "[default: a local cluster on this host that owns the campaign's chips]."),
]


def _need_dask() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        fail("this command needs Dask distributed: pip install 'labctl[dask]'", 2)


def worker(
    scheduler: Annotated[str, typer.Option("--scheduler", metavar="ADDRESS", help="Dask scheduler to join, "
                                           "e.g. tcp://10.0.0.2:8786.")],
    config: ConfigOption = None,
    chips: Annotated[Optional[str], typer.Option("--chips", metavar="A,B", help="The chips this host owns "
                                                 "[default: every chip of its lab.toml].")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Worker name shown by Dask [default: Dask's].")] = None,
) -> None:
    """Join a Dask scheduler as this rig host's worker: it owns the host's chips, one resource each."""
    _need_dask()
    from labctl.campaigns.worker import owned_chips, serve

    owned = reported(lambda: owned_chips(config, [c for c in chips.split(",") if c] if chips else None))
    try:
        serve(scheduler, owned, config, name, announce=lambda line: typer.echo(line, err=True))
    except OSError as err:
        fail(f"--scheduler {scheduler}: {err}", 1)


def campaign_run(
    campaign: Annotated[Path, typer.Argument(metavar="FILE", help="Campaign TOML: chips, stages, their order.")],
    scheduler: SchedulerOption = None,
    data: DataOption = None,
    config: ConfigOption = None,
    host_timeout: Annotated[float, typer.Option("--host-timeout", metavar="SECONDS", min=1.0,
                                                help="How long a chip's host may stay away before its "
                                                "remaining tasks are reported and dropped.")] = 900.0,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run a campaign's tasks on the lab's workers (or locally) and report each; exit 1 unless all completed and passed."""
    _need_dask()
    from labctl.campaigns.runner import run_campaign

    say = (lambda line: None) if quiet else (lambda line: typer.echo(line, err=True))
    results = reported(lambda: run_campaign(campaign, scheduler=scheduler, data=data, config=config,
                                            host_timeout_s=host_timeout, say=say))
    if json_out:
        typer.echo(json.dumps(results, indent=2, default=str))
    else:
        _print_results(results)
    ok = all(r["status"] == "completed" and r.get("passed") is not False for r in results)
    raise typer.Exit(0 if ok else 1)


def _print_results(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="campaign", title_justify="left")
    for column in ("task", "status", "how", "run", "host", "passed", "detail"):
        table.add_column(column, no_wrap=column in ("task", "status"))  # what a reader scans for
    for r in results:
        detail = r.get("error") or _figures_text(r.get("summary") or {})
        passed = {True: "yes", False: "no"}.get(r.get("passed"), "-")
        table.add_row(r["task"], r["status"], r.get("action", "-"), r.get("run_id") or "-", r.get("host", "-"),
                      passed, detail)
    Console().print(table)


def _figures_text(figures: dict) -> str:
    shown = [("converged_fraction", "converged {:.1%}"), ("error_sigma_us", "σ {:.3f} µS"),
             ("stuck_cells", "{} stuck"), ("nu_median", "ν {:.4f}")]
    return ", ".join(text.format(figures[key]) for key, text in shown if figures.get(key) is not None)


def fleet_summary(data: DataOption = None, json_out: JsonOption = False) -> None:
    """Per chip: its last calibration and figures, its drift ν, and their trend over runs."""
    from labctl.campaigns.fleet import fleet_summary as summarise

    frame = reported(lambda: summarise(data))
    if json_out:
        typer.echo(frame.to_json(orient="records", date_format="iso", indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fleet", title_justify="left")
    for column in ("chip", "runs", "last calibration", "converged", "σ µS", "passed", "ν median", "trend (conv., ν)"):
        table.add_column(column)

    def number(value, pattern: str) -> str:
        return "-" if value is None or value != value else format(value, pattern)

    for row in frame.to_dict("records"):
        when = row["last_calibration_utc"]
        last = f"{row['last_calibration']} ({when:%Y-%m-%d %H:%M})" if row["last_calibration"] else "-"
        trend = f"{' → '.join(f'{v:.1%}' for v in row['converged_trend']) or '-'}; " \
                f"{' → '.join(f'{v:.3f}' for v in row['nu_trend']) or '-'}"
        table.add_row(row["chip"], str(row["runs"]), last, number(row["converged_fraction"], ".2%"),
                      number(row["error_sigma_us"], ".3f"), {True: "yes", False: "no"}.get(row["passed"], "-"),
                      number(row["nu_median"], ".4f"), trend)
    Console().print(table)
