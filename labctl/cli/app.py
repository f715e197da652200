"""The ``labctl`` command line: which command is which, and the console-script entry.

Exit codes: 0 success; 1 acceptance limits not met, or an instrument or a run failed;
2 bad input (nothing started); 3 internal error. Each command module holds the commands of
one capability; this one registers them, so ``labctl --help`` reads as one table.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from labctl.cli import campaign, measure, rigs, runs, schedule, twin
from labctl.cli.options import EXIT_CODES, EXIT_CODES_READING, EXIT_INTERRUPTED
from labctl.cli.output import one_line, show_warnings


def _arguments_by_metavar_only() -> None:
    """typer prints an argument's Python type beside its metavar (``[CHIP]... <list[str]>``),
    which means nothing to a user; every argument here has a metavar that says it all."""
    from typer.core import TyperArgument

    TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]



_arguments_by_metavar_only()
app = typer.Typer(
    name="labctl",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Lab control and calibration for analogue in-memory-computing test chips.\n\n"
    "With no configuration, chip0 is the built-in software twin of a 256x256 PCM crossbar.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)



def _version(value: bool) -> None:
    if value:
        from labctl import __version__

        typer.echo(f"labctl {__version__}")
        raise typer.Exit()



@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Lab control and calibration for analogue in-memory-computing test chips."""
    show_warnings()



app.command(epilog=EXIT_CODES)(measure.calibrate)
app.command(epilog=EXIT_CODES)(measure.drift)
app.command(epilog=EXIT_CODES)(measure.maintain)
app.command(epilog=EXIT_CODES)(measure.validate)
app.command(epilog=EXIT_CODES)(measure.solve)
app.command(epilog=EXIT_CODES)(measure.resume)
app.command(epilog=EXIT_CODES_READING)(runs.report)
app.command(epilog="Exit codes: 0 no regression; 1 run B regressed; 2 bad input.")(runs.compare)
app.command("export-model", epilog=EXIT_CODES_READING)(runs.export_model)
app.command(epilog=EXIT_CODES_READING)(rigs.rigs)
app.command(epilog="Exit codes: 0 every instrument answered and is within its limits; 1 one did not (its row says "
                   "FAIL), or a run holds the chip; 2 bad input; 3 internal error.")(rigs.doctor)

runs_app = typer.Typer(help="Runs in the store.", no_args_is_help=True)
runs_app.command("list")(runs.runs_list)
runs_app.command("show")(runs.runs_show)
app.add_typer(runs_app, name="runs")

schedule_app = typer.Typer(help="Scheduled runs (cron or systemd user timers).", no_args_is_help=True)
schedule_app.command("add")(schedule.schedule_add)
schedule_app.command("list")(schedule.schedule_list)
schedule_app.command("remove")(schedule.schedule_remove)
app.add_typer(schedule_app, name="schedule")

app.command(epilog="Exit codes: 0 the worker stopped (Ctrl-C, SIGTERM); 1 the scheduler could not be reached; "
                   "2 bad input.")(campaign.worker)
campaign_app = typer.Typer(help="Campaigns: runs over many chips and rig hosts, on Dask distributed.",
                           no_args_is_help=True)
campaign_app.command("run", epilog="Exit codes: 0 every task completed and passed; 1 one did not; 2 bad input.")(
    campaign.campaign_run)
app.add_typer(campaign_app, name="campaign")
fleet_app = typer.Typer(help="The lab's chips as a whole, from the shared store.", no_args_is_help=True)
fleet_app.command("summary", epilog=EXIT_CODES_READING)(campaign.fleet_summary)
app.add_typer(fleet_app, name="fleet")

sim_app = typer.Typer(help="The built-in software twin: its device presets and physics.", no_args_is_help=True)
sim_app.command("describe")(twin.sim_describe)
sim_app.command("serve")(twin.sim_serve)
app.add_typer(sim_app, name="sim")


def _terminate(signum, frame) -> None:
    """SIGTERM takes the same way out as Ctrl-C: the run is marked aborted, the rig left safe."""
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry: parser errors also become one line on stderr and exit 2."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(standalone_mode=False)
    except typer.Exit as done:
        code = done.exit_code
    except typer.Abort:  # Ctrl-C outside a run (a run reports its own id and how to resume it)
        code = EXIT_INTERRUPTED
        typer.echo(
            "labctl: interrupted: no run was in progress, or it is marked aborted and the rig was left safe", err=True
        )
    except Exception as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # `labctl` or `labctl runs` alone: the help, as --help
            typer.echo(err.format_message())
            code = 0
        elif _is_usage_error(err):
            ctx = getattr(err, "ctx", None)
            command = ctx.command_path if ctx is not None else "labctl"
            typer.echo(f"labctl: error: {one_line(err.format_message())} (see '{command} --help')", err=True)
            code = 2
        elif os.environ.get("LABCTL_DEBUG"):
            raise
        else:  # a bug: one line by default, the traceback on request
            typer.echo(
                f"labctl: internal error: {type(err).__name__}: {one_line(str(err))} "
                "(set LABCTL_DEBUG=1 for the traceback)",
                err=True,
            )
            code = 3
    sys.exit(code if isinstance(code, int) else 0)


def _is_usage_error(err: Exception) -> bool:
    """The parser's usage errors (typer may vendor its parser, so match by shape, not by class)."""
    return getattr(err, "exit_code", None) == 2 and hasattr(err, "format_message")

