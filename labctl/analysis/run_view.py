"""A stored run for a person: what ``labctl runs show`` prints instead of raw JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from labctl.store.query import observed_status
from labctl.analysis.summary import acceptance_table, board_cost_line, link_line, steps_table


def render_manifest(manifest: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    protocol = manifest.get("protocol", {})
    name = protocol.get("effective", {}).get("name", "run")
    table = Table(title=f"{name} {manifest.get('chip')}  run {manifest['run_id']}", show_header=False,
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    status = observed_status(manifest) or "-"
    passed = manifest.get("passed")
    result = {True: "[green]passed[/green]", False: "[red]FAILED[/red] (acceptance)"}.get(passed, "")
    table.add_row("status", f"{status}  {result}".strip())
    if manifest.get("error"):
        table.add_row("reason", f"[red]{manifest['error']}[/red]")
    table.add_row("started", _when(manifest.get("started_utc")))
    if manifest.get("ended_utc"):
        table.add_row("ended", f"{_when(manifest['ended_utc'])}  ({_duration(manifest)})")
    for resumed in manifest.get("resumed_utc", []):
        table.add_row("resumed", _when(resumed))
    table.add_row("by", f"{manifest.get('user', '?')} on {manifest.get('host', '?')} (pid {manifest.get('pid', '?')}), "
                        f"labctl {manifest.get('labctl_version', '?')}")
    if manifest.get("command"):
        table.add_row("command", " ".join(manifest["command"]))
    table.add_row("chip", _chip(manifest))
    table.add_row("protocol", f"{protocol.get('source', '?')} (sha256 {str(protocol.get('sha256', '?'))[:12]})")
    table.add_row("targets", manifest.get("targets", {}).get("source", "-"))
    table.add_row("started from", f"record of run {manifest['starting_from_record']}"
                  if manifest.get("starting_from_record") else "no earlier record")
    summary = manifest.get("summary") or {}
    if "wall_time_s" in summary:
        table.add_row("wall time", f"{summary['wall_time_s']:.2f} s")
    if board_cost_line(summary.get("board_cost")):
        table.add_row("board time", board_cost_line(summary.get("board_cost")))
    if link_line(summary.get("link")):
        table.add_row("link", link_line(summary.get("link")))
    console.print(table)
    steps = manifest.get("steps") if isinstance(manifest.get("steps"), dict) else {}
    planned = protocol.get("effective", {}).get("steps", [])
    console.print(steps_table(steps, [step for step in planned if step not in steps]))
    acceptance = manifest.get("acceptance")
    if isinstance(acceptance, list) and acceptance:
        console.print(acceptance_table(acceptance))
    console.print(f"[dim]everything: labctl runs show {manifest['run_id']} --json; "
                  f"plots: labctl report {manifest['run_id']}[/dim]")


def _chip(manifest: dict[str, Any]) -> str:
    spec = manifest.get("chip_spec") or {}
    twin = spec.get("twin")
    where = (f"twin in process ({twin.get('preset')}, seed {twin.get('seed')})" if twin
             else f"board {spec.get('board', '?')}")
    geometry = spec.get("geometry")
    size = f", {geometry[1]}x{geometry[2]}" if geometry else ""
    identity = manifest.get("chip_identity")
    return f"{where}{size}" + (f"; {identity}" if identity else "")


def _when(text: str | None) -> str:
    if not text:
        return "-"
    try:
        return f"{datetime.fromisoformat(text):%Y-%m-%d %H:%M:%S} UTC"
    except ValueError:
        return text


def _duration(manifest: dict[str, Any]) -> str:
    try:
        seconds = (datetime.fromisoformat(manifest["ended_utc"]) - datetime.fromisoformat(manifest["started_utc"]))
    except (KeyError, TypeError, ValueError):
        return "?"
    total = seconds.total_seconds()
    return f"{total:.1f} s" if total < 120 else f"{total / 60:.1f} min" if total < 7200 else f"{total / 3600:.1f} h"
