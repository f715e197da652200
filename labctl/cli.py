"""The ``labctl`` command line: argument parsing and printing only; the work is in ``labctl.api``.

Exit codes: 0 success; 1 acceptance limits not met, or an instrument or a run failed;
2 bad input (nothing started); 3 internal error.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

EXIT_ACCEPTANCE = 1
EXIT_INTERRUPTED = 130
EXIT_CODES = (
    "Exit codes: 0 success; 1 acceptance limits failed, or an instrument or the run failed; "
    "2 bad input (nothing started); 3 internal error."
)
EXIT_CODES_READING = (
    "Exit codes: 0 success; 2 bad input (an unknown run, a file that cannot be written); 3 internal error."
)
ConfigOption = Annotated[
    Optional[Path],
    typer.Option(
        "--config", metavar="FILE", help="lab.toml [default: $LABCTL_CONFIG, ./lab.toml, ~/.config/labctl/lab.toml]."
    ),
]
DataOption = Annotated[
    Optional[str],  # a path or an object-storage URI: a Path would fold the "//" of s3://
    typer.Option(
        "--data",
        metavar="DIR|URI",
        help="Run store: a directory or a URI such as s3://bucket/prefix [default: $LABCTL_DATA or ./labdata].",
    ),
]
FreshOption = Annotated[
    bool, typer.Option("--fresh", help="Ignore the chip's earlier calibration record; calibrate from scratch.")
]
SeedOption = Annotated[
    Optional[int], typer.Option("--seed", metavar="N", help="Twin only: seed the simulated chip is made with.")
]
SizeOption = Annotated[
    Optional[str], typer.Option("--size", metavar="ROWSxCOLS", help="Twin only: array size ROWSxCOLS, e.g. 64x64.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
RunIdArgument = Annotated[
    str, typer.Argument(metavar="RUN", help="Run id, a unique prefix or tail of one, or 'latest'.")
]


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
    _show_warnings()


def _show_warnings() -> None:
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


@app.command(epilog=EXIT_CODES)
def calibrate(
    chips: Annotated[
        Optional[list[str]],
        typer.Argument(metavar="[CHIP]...", help="Chip(s) to calibrate, in parallel; chip0 is the built-in twin."),
    ] = None,
    all_chips: Annotated[bool, typer.Option("--all", help="Every chip the configuration knows.")] = False,
    targets: Annotated[
        Optional[Path],
        typer.Option(
            "--targets", metavar="FILE", help="Target conductances in µS (.npy, .csv or .parquet), one per cell."
        ),
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            "--weights", metavar="FILE", help="Signed weights (rows x cols/2) mapped to differential column pairs."
        ),
    ] = None,
    fresh: FreshOption = False,
    protocol: Annotated[
        Optional[Path],
        typer.Option("--protocol", metavar="FILE|NAME", help="Protocol TOML to run instead of the built-in calibrate."),
    ] = None,
    data: DataOption = None,
    config: ConfigOption = None,
    seed: SeedOption = None,
    size: SizeOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Calibrate chips: health, read-out, read noise, write-verify to targets, MVM check.

    Every read and pulse is stored as Parquet under the data directory. Several chips run
    in parallel, each with its own lock, run and progress bar; one failing chip does not
    stop the others, and the exit code is the worst of theirs.
    """
    from labctl import api

    names = _run(lambda: _chip_names(chips, all_chips, config))
    if len(names) > 1:  # a name that is no chip is a typo in the command: refused before any chip starts
        from labctl.rigs.config import resolve_chip

        _run(lambda: [resolve_chip(name, config=config) for name in names])

    def one(chip: str, progress) -> object:
        return api.calibrate(
            chip,
            seed=seed,
            size=size,
            targets=targets,
            weights=weights,
            protocol=protocol,
            data=data,
            config=config,
            fresh=fresh,
            progress=progress,
        )

    if len(names) == 1:
        with _progress(enabled=not quiet) as progress:
            outcome = _run(lambda: one(names[0], progress))
        _print_outcome(outcome, as_json)
        return
    _calibrate_in_parallel(names, one, as_json, quiet)


def _chip_names(chips: list[str] | None, all_chips: bool, config: Path | None) -> list[str]:
    from labctl.rigs.config import configured_chip_names
    from labctl.errors import UsageError

    if all_chips and chips:
        raise UsageError("give chip names or --all, not both")
    if all_chips:
        names = configured_chip_names(config)
        if not names:
            raise UsageError("--all: the configuration names no chips")
        return names
    names = list(dict.fromkeys(chips or ["chip0"]))
    return names


def _calibrate_in_parallel(names: list[str], one, as_json: bool, quiet: bool) -> None:
    """Each chip in its own thread; the exit code reflects all: 2 bad input, else 1 any failure, else 0."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from labctl.errors import LabctlError
    from labctl.analysis.summary import _finite, render

    outcomes: dict[str, object] = {}
    errors: dict[str, LabctlError] = {}
    with _progress(enabled=not quiet) as progress:

        def labelled(chip: str):
            return None if progress is None else (lambda step, done, total: progress(f"{chip} {step}", done, total))

        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            futures = {chip: pool.submit(one, chip, labelled(chip)) for chip in names}
            for chip, future in futures.items():
                try:
                    outcomes[chip] = future.result()
                except LabctlError as err:
                    errors[chip] = err
    if as_json:
        typer.echo(
            json.dumps(
                _finite(
                    {
                        "runs": [outcome.summary() for outcome in outcomes.values()],
                        "errors": {
                            chip: {"error": str(err), "exit_code": err.exit_code} for chip, err in errors.items()
                        },
                    }
                ),
                indent=2,
            )
        )
    else:
        from rich.console import Console

        console = Console()
        for outcome in outcomes.values():
            render(outcome, console)
    for chip, err in errors.items():
        typer.echo(f"labctl: error: {chip}: {one_line(str(err))}", err=True)
    codes = [err.exit_code for err in errors.values()] + [0 if o.passed else EXIT_ACCEPTANCE for o in outcomes.values()]
    code = 2 if 2 in codes else max(codes)
    if code:
        raise typer.Exit(code)


sim_app = typer.Typer(help="The built-in software twin: its device presets and physics.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


@sim_app.command("describe")
def sim_describe(
    preset: Annotated[
        str, typer.Option("--preset", metavar="NAME", help="Device preset: pcm, rram or sram-64.")
    ] = "pcm",
    as_json: Annotated[bool, typer.Option("--json", help="Print the parameters as JSON.")] = False,
) -> None:
    """Print a preset's device, periphery and thermal parameters (see sims/README.md for the equations)."""
    import json

    from labctl_sims.presets import PRESETS

    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}: known presets are {', '.join(sorted(PRESETS))}", 2)
    parameters = PRESETS[preset].describe()
    if as_json:
        typer.echo(json.dumps(parameters, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"preset {preset}: {parameters.pop('description')}", title_justify="left")
    table.add_column("parameter")
    table.add_column("value")
    for name, value in parameters.items():
        table.add_row(name, _format_value(value))
    Console().print(table)


@sim_app.command("serve")
def sim_serve(
    preset: Annotated[
        str, typer.Option("--preset", metavar="NAME", help="Device preset: pcm, rram or sram-64.")
    ] = "pcm",
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed the simulated chip is made with.")] = 0,
    size: Annotated[
        Optional[str], typer.Option("--size", metavar="ROWSxCOLS", help="Array size ROWSxCOLS [default: the preset's].")
    ] = None,
    fault: Annotated[
        Optional[list[str]],
        typer.Option("--fault", metavar="KIND:RATE", help="Wire fault KIND:RATE (delay, drop, garble, disconnect)."),
    ] = None,
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", help="First TCP port (board; SMU +1, temperature +2); 0: any.")
    ] = 0,
    chip: Annotated[
        str, typer.Option("--chip", metavar="NAME", help="Chip name for the printed lab.toml snippet.")
    ] = "chip1",
) -> None:
    """Serve a twin rig (board, SMU, temperature controller over one chip) on pty and TCP until Ctrl-C."""
    from labctl.rigs.serve import serve_forever

    _run(
        lambda: serve_forever(preset=preset, seed=seed, size=size, faults=fault or [], host=host, port=port, chip=chip)
    )


schedule_app = typer.Typer(help="Scheduled runs (cron or systemd user timers).", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")
ViaOption = Annotated[str, typer.Option("--via", metavar="auto|cron|systemd", help="auto, cron or systemd.")]


@schedule_app.command("add")
def schedule_add(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="What to run: drift or calibrate.")],
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
        _fail(f"--via {via!r}: choose auto, cron or systemd", 2)
    _run(lambda: _check_scheduled(kind, chip, args))
    entry, installed = _run(lambda: schedule.add(kind, chip, at, daily, via, args, dry_run))
    verb = "would install" if dry_run else "installed"
    typer.echo(f"{verb} schedule {entry.id} ({entry.via}, {entry.when}):\n{installed}")


def _check_scheduled(kind: str, chip: str, extra: str) -> None:
    """Parse the scheduled command line as labctl will at run time, and check its chip,
    protocol and options, so a typo fails now and not unattended at night."""
    from labctl import api
    from labctl.errors import UsageError
    from labctl.runs.schedule import scheduled_options

    words = scheduled_options(kind, chip, extra)
    command = typer.main.get_command(app).commands[kind]  # type: ignore[attr-defined]
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
    for name in _chip_names(params["chips"], params["all_chips"], params["config"]):
        api.check(name, targets=params["targets"], weights=params["weights"], **common)


@schedule_app.command("list")
def schedule_list(via: ViaOption = "auto") -> None:
    """Show labctl's scheduled runs."""
    from labctl.runs import schedule

    found = _run(lambda: schedule.entries(via))
    if not found:
        typer.echo("no labctl schedules")
    for entry in found:
        typer.echo(f"{entry.id}  {entry.via:<7}  {entry.when}  {entry.command}")


@schedule_app.command("remove")
def schedule_remove(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="Schedule id from 'schedule list'.")],
    via: ViaOption = "auto",
) -> None:
    """Remove a scheduled run."""
    from labctl.runs import schedule

    entry = _run(lambda: schedule.remove(entry_id, via))
    typer.echo(f"removed schedule {entry.id} ({entry.via})")


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ", ".join(_format_value(v) for v in value)
    return str(value)


@app.command(epilog=EXIT_CODES)
def drift(
    chip: Annotated[
        str, typer.Argument(metavar="[CHIP]", help="Chip to characterise; chip0 is the built-in twin.")
    ] = "chip0",
    duration: Annotated[
        str, typer.Option("--duration", metavar="TIME", help="Time per temperature: 12h, 90m, 3600s, 2d.")
    ] = "12h",
    reads: Annotated[int, typer.Option("--reads", metavar="N", help="Array reads per temperature, log-spaced.")] = 60,
    temperatures: Annotated[
        Optional[str],
        typer.Option("--temperatures", metavar="K[,K...]", help="Kelvin, comma-separated, e.g. 300,330,360."),
    ] = None,
    protocol: Annotated[
        Optional[Path],
        typer.Option("--protocol", metavar="FILE|NAME", help="Protocol TOML to run instead of the built-in drift."),
    ] = None,
    data: DataOption = None,
    config: ConfigOption = None,
    fresh: FreshOption = False,
    seed: SeedOption = None,
    size: SizeOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    resume_run: Annotated[
        bool, typer.Option("--resume", help="Continue this chip's newest unfinished drift run instead.")
    ] = False,
) -> None:
    """Program a chip, read it at log-spaced times (per temperature), fit drift, check compensation.

    On real hardware it waits in real time; on the twin the same steps advance its virtual
    clock, so 12 hours take seconds.
    """
    from labctl import api

    def run():
        if resume_run:
            run_id = api.resumable_run(chip, "drift", data)
            return api.resume(run_id, data=data, config=config, progress=progress)
        seconds = parse_duration(duration)
        kelvins = parse_temperatures(temperatures) if temperatures else None
        return api.run_drift(
            chip,
            duration_s=seconds,
            reads=reads,
            temperatures_k=kelvins,
            seed=seed,
            size=size,
            protocol=protocol,
            data=data,
            config=config,
            fresh=fresh,
            progress=progress,
        )

    with _progress(enabled=not quiet) as progress:
        outcome = _run(run)
    _print_outcome(outcome, as_json)


@app.command(epilog=EXIT_CODES)
def resume(
    run_id: RunIdArgument,
    data: DataOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Continue an interrupted run from its last completed step (a drift run from its last read)."""
    from labctl import api

    with _progress(enabled=not quiet) as progress:
        outcome = _run(lambda: api.resume(run_id, data=data, config=config, progress=progress))
    _print_outcome(outcome, as_json)


runs_app = typer.Typer(help="Runs in the store.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
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

    frame = _run(table)
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


@runs_app.command("show")
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

    found = _run(manifest)
    if as_json:
        found.get("protocol", {}).pop("content", None)
        typer.echo(json.dumps(found, indent=2))
        return
    from rich.console import Console

    from labctl.analysis.run_view import render_manifest

    render_manifest(found, Console())


@app.command("export-model", epilog=EXIT_CODES_READING)
def export_model(
    run_id: RunIdArgument,
    fmt: Annotated[str, typer.Option("--format", metavar="json", help="Output format (json).")] = "json",
    out: Annotated[
        Optional[Path], typer.Option("--out", metavar="PATH", help="Write to this file instead of stdout.")
    ] = None,
    data: DataOption = None,
) -> None:
    """Export a chip's measured noise model (programming error, drift, read noise, stuck rate, ADC) for training."""
    import json

    from labctl import open_store
    from labctl.analysis.statistics import noise_model

    if fmt != "json":
        _fail(f"--format {fmt!r}: only json is supported", 2)

    def export():
        store = open_store(data)
        return noise_model(store, store.resolve(run_id))

    model = _run(export)
    run_id = model["run_id"]
    if model["run_status"] != "completed" or model["run_passed"] is False:
        state = "missed its acceptance" if model["run_status"] == "completed" else f"is {model['run_status']}"
        typer.echo(f"labctl: warning: run {run_id} {state}: its statistics may not describe the chip", err=True)
    text = json.dumps(model, indent=2)
    if out is None:
        typer.echo(text)
    else:
        try:
            out.write_text(text + "\n")
        except OSError as err:
            _fail(f"--out {str(out)!r}: cannot write: {err.strerror or err}", 2)
        typer.echo(f"noise model of run {run_id} written to {out}")


@app.command(epilog=EXIT_CODES_READING)
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

    page = _run(report_run)
    typer.echo(f"report written to {page}")


@app.command(epilog="Exit codes: 0 no regression; 1 run B regressed; 2 bad input.")
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
    data: DataOption = None,
) -> None:
    """Compare two runs' distributions (programming error, ν, MVM error) with two-sample KS tests."""
    from labctl import open_store
    from labctl.analysis.statistics import compare as compare_runs

    if not 0 < alpha < 1:
        _fail(f"--alpha {alpha:g}: a significance level is between 0 and 1 (exclusive)", 2)
    if not max_change >= 0:
        _fail(f"--max-change {max_change:g}: must be 0 or more", 2)

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
        return compare_runs(store, first, second, alpha, max_change)

    results = _run(compared)
    typer.echo(f"{'metric':<22}{'A':>10}{'B':>10}{'change':>9}{'KS D':>8}{'p':>10}  verdict")
    for r in results:
        verdict = "REGRESSED" if r.regressed else "ok"
        typer.echo(
            f"{r.metric:<22}{r.spread_a:>10.4g}{r.spread_b:>10.4g}{100 * r.change:>8.1f}%"
            f"{r.ks:>8.3f}{r.p_value:>10.2g}  {verdict}"
        )
    if any(r.regressed for r in results):
        raise typer.Exit(1)


def parse_duration(text: str) -> float:
    import re

    from labctl.errors import UsageError

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise UsageError(f"--duration {text!r}: expected a number with s, m, h or d, for example 12h")
    value = float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    if value <= 0:
        raise UsageError(f"--duration {text!r}: must be positive")
    return value


def parse_temperatures(text: str) -> tuple[float, ...]:
    from labctl.errors import UsageError

    try:
        kelvins = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--temperatures {text!r}: expected kelvin values separated by commas") from None
    if not kelvins or any(not 0 < k < 1000 for k in kelvins):
        raise UsageError(f"--temperatures {text!r}: each must be a temperature in kelvin")
    return kelvins


def _print_outcome(outcome, as_json: bool) -> None:
    from labctl.analysis.summary import as_json as summary_json
    from labctl.analysis.summary import render

    if as_json:
        typer.echo(summary_json(outcome))
    else:
        from rich.console import Console

        render(outcome, Console())
    if not outcome.passed:
        raise typer.Exit(EXIT_ACCEPTANCE)


@app.command(epilog=EXIT_CODES_READING)
def rigs(config: ConfigOption = None) -> None:
    """List the chips the configuration knows and how each is reached."""
    from rich.console import Console
    from rich.table import Table

    from labctl.rigs.config import load_config, window_of

    lab, source = _run(lambda: load_config(config))
    table = Table(title=f"rigs ({source})", title_justify="left")
    for column in ("chip", "board", "smu", "temperature", "window µS"):
        table.add_column(column)
    for name, chip in sorted(lab.chips.items()):
        if chip.twin is not None:
            size = chip.twin.size or "preset size"
            board = f"twin in process ({chip.twin.preset}, seed {chip.twin.seed}, {size})"
            smu = temperature = "twin"
        else:
            board, smu, temperature = chip.board or "-", chip.smu or "-", chip.temperature or "-"
        low, high = window_of(chip)
        table.add_row(name, board, smu, temperature, f"{low:g}-{high:g}")
    Console().print(table)


@app.command(
    epilog="Exit codes: 0 every instrument answered and is within its limits; 1 one did not (its row "
    "says FAIL), or a run holds the chip; 2 bad input; 3 internal error."
)
def doctor(
    chip: Annotated[str, typer.Argument(metavar="[CHIP]", help="Chip whose instruments to check.")] = "chip0",
    config: ConfigOption = None,
) -> None:
    """Connect to every instrument of a chip, identify it, check its limits, and print a table."""
    from rich.console import Console
    from rich.table import Table

    from labctl.rigs.doctor import examine

    rows = _run(lambda: examine(chip, config))
    table = Table(title=f"doctor {chip}", title_justify="left")
    for column in ("instrument", "resource", "identity", "check", "result"):
        table.add_column(column)
    for row in rows:
        mark = "[green]ok[/green]" if row.ok else "[red]FAIL[/red]"
        table.add_row(row.instrument, row.resource, row.identity, row.detail, mark)
    Console().print(table)
    if not all(row.ok for row in rows):
        raise typer.Exit(1)


def _run(work):
    """Turn labctl's own errors into one line on stderr and their exit code."""
    from labctl.errors import LabctlError

    try:
        return work()
    except LabctlError as err:
        _fail(str(err), err.exit_code)


def _fail(message: str, code: int) -> None:
    typer.echo(f"labctl: error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def one_line(message: str) -> str:
    """An error is one line, whatever a file or an instrument put into it: control
    characters (a newline, a record separator) are shown escaped, credentials hidden."""
    from labctl.redact import redact

    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in redact(message))


class _progress:
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
