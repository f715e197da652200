"""What the commands print: one line per error (and its exit code), warnings, progress, outcomes."""

from __future__ import annotations

import sys
import threading

import typer

from labctl.cli.options import EXIT_ACCEPTANCE


def reported(work):
    """Turn labctl's own errors into one line on stderr and their exit code."""
    from labctl.errors import LabctlError

    try:
        return work()
    except LabctlError as err:
        fail(str(err), err.exit_code)


def fail(message: str, code: int) -> None:
    typer.echo(f"labctl: error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def one_line(message: str) -> str:
    """An error is one line, whatever a file or an instrument put into it: control
    characters (a newline, a record separator) are shown escaped, credentials hidden."""
    from labctl.redact import redact

    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in redact(message))


def show_warnings() -> None:
    """labctl's own warnings (a skipped record, a safe state not confirmed) as one
    ``labctl: warning:`` line each on stderr, whatever stderr is at the time."""
    import logging

    class WarningLine(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(f"labctl: warning: {one_line(record.getMessage())}", file=sys.stderr, flush=True)

    logger = logging.getLogger("labctl")
    if not any(type(h).__name__ == "WarningLine" for h in logger.handlers):
        logger.addHandler(WarningLine(logging.WARNING))
        logger.propagate = False


class StepProgress:
    """A progress bar per step on stderr: cells done out of all cells."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = None
        self._started = False
        self._start_lock = threading.Lock()  # chips in parallel report from their own threads
        self._tasks: dict[str, object] = {}

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description:<13}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        return self.update

    def update(self, step: str, done: int, total: int) -> None:
        with self._start_lock:  # started at the first step: an error before it leaves no blank line behind
            if not self._started:
                self._bar.start()
                self._started = True
        if step not in self._tasks:
            unit = "reads" if step.split()[-1] == "drift" else "cells in band"
            self._tasks[step] = self._bar.add_task(step.replace("_", "-"), total=total, unit=unit)
        self._bar.update(self._tasks[step], completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self._started:
            self._bar.stop()


def print_outcome(outcome, as_json: bool) -> None:
    from labctl.analysis.summary import as_json as summary_json
    from labctl.analysis.summary import render

    if as_json:
        typer.echo(summary_json(outcome))
    else:
        from rich.console import Console

        render(outcome, Console())
    if not outcome.passed:
        raise typer.Exit(EXIT_ACCEPTANCE)

