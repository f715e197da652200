"""Commands for scheduled runs: add (checked as the run will be), list, remove."""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli.output import fail, reported

ViaOption = Annotated[str, typer.Option("--via", metavar="auto|cron|systemd", help="auto, cron or systemd.")]


def schedule_add(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="What to run: calibrate, drift or maintain.")],
    chip: Annotated[str, typer.Argument(metavar="CHIP", help="Chip to run it on.")],
    at: Annotated[str, typer.Option("--at", metavar="HH:MM", help="Time of day, HH:MM.")],
    daily: Annotated[bool, typer.Option("--daily", help="Every day (default: once, at the next HH:MM).")] = False,
    via: ViaOption = "auto",
    args: Annotated[
        str, typer.Option("--args", metavar="OPTIONS", help='Further options for the run, e.g. "--duration 8h".')
    ] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be installed; install nothing.")] = False,
) -> None:
    """Schedule a run: a crontab entry or a systemd user timer; it logs to a file and stores a run."""
    from labctl.runs import schedule

    if via not in ("auto", "cron", "systemd"):
        fail(f"--via {via!r}: choose auto, cron or systemd", 2)
    reported(lambda: _check_scheduled(kind, chip, args))
    entry, installed = reported(lambda: schedule.add(kind, chip, at, daily, via, args, dry_run))
    verb = "would install" if dry_run else "installed"
    typer.echo(f"{verb} schedule {entry.id} ({entry.via}, {entry.when}):\n{installed}")


def _check_scheduled(kind: str, chip: str, extra: str) -> None:
    """Parse the scheduled command line as labctl will at run time, and check its chip,
    protocol and options, so a typo fails now and not unattended at night."""
    from labctl import api
    from labctl.cli import measure
    from labctl.cli.measure import chip_names
    from labctl.cli.options import parse_duration, parse_temperatures
    from labctl.errors import UsageError
    from labctl.runs.schedule import scheduled_options

    words = scheduled_options(kind, chip, extra)
    parser = typer.Typer()  # the command alone, parsed exactly as `labctl KIND` will parse it
    parser.command()(getattr(measure, kind))
    command = typer.main.get_command(parser)
    try:
        params = command.make_context(kind, [chip, *words]).params
    except Exception as err:  # click's usage errors (typer may vendor click: matched by shape, not class)
        if not callable(getattr(err, "format_message", None)):
            raise
        raise UsageError(f"--args {extra!r}: {err.format_message()}") from None
    common = {key: params[key] for key in ("seed", "size", "protocol", "config")}
    if kind == "drift":
        if params["resume_run"]:
            raise UsageError("--args: a schedule starts new runs; --resume is for continuing one by hand")
        overrides = {"duration_s": parse_duration(params["duration"]), "reads": params["reads"]}
        if params["temperatures"]:
            overrides["temperatures_k"] = parse_temperatures(params["temperatures"])
        api.check(params["chip"], builtin="drift", drift=overrides, **common)
        return
    if kind == "maintain":
        if params["resume_run"]:
            raise UsageError("--args: a schedule starts new runs; --resume is for continuing one by hand")
        overrides = {"every_s": parse_duration(params["every"], "--every"),
                     "until_s": parse_duration(params["until"], "--until"),
                     "refresh": params["refresh"]}
        api.check(params["chip"], builtin="maintain", maintain=overrides, targets=params["targets"], **common)
        return
    for name in chip_names(params["chips"], params["all_chips"], params["config"]):
        api.check(name, targets=params["targets"], weights=params["weights"], **common)


def schedule_list(via: ViaOption = "auto") -> None:
    """Show labctl's scheduled runs."""
    from labctl.runs import schedule

    found = reported(lambda: schedule.entries(via))
    if not found:
        typer.echo("no labctl schedules")
    for entry in found:
        typer.echo(f"{entry.id}  {entry.via:<7}  {entry.when}  {entry.command}")


def schedule_remove(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="Schedule id from 'schedule list'.")],
    via: ViaOption = "auto",
) -> None:
    """Remove a scheduled run."""
    from labctl.runs import schedule

    entry = reported(lambda: schedule.remove(entry_id, via))
    typer.echo(f"removed schedule {entry.id} ({entry.via})")

