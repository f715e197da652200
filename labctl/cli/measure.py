"""Commands that measure a chip: calibrate, drift, maintain, validate, solve, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from labctl.cli.options import (
    EXIT_ACCEPTANCE,
    protocol_option,
    ConfigOption,
    DataOption,
    FreshOption,
    JsonOption,
    QuietOption,
    RunIdArgument,
    SeedOption,
    SizeOption,
    parse_duration,
    parse_temperatures,
)
from labctl.cli.output import StepProgress, one_line, print_outcome, reported


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
    protocol: protocol_option("calibrate") = None,
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

    names = reported(lambda: chip_names(chips, all_chips, config))
    if len(names) > 1:  # a name that is no chip is a typo in the command: refused before any chip starts
        from labctl.rigs.config import resolve_chip

        reported(lambda: [resolve_chip(name, config=config) for name in names])

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
        with StepProgress(enabled=not quiet) as progress:
            outcome = reported(lambda: one(names[0], progress))
        print_outcome(outcome, as_json)
        return
    _calibrate_in_parallel(names, one, as_json, quiet)


def chip_names(chips: list[str] | None, all_chips: bool, config: Path | None) -> list[str]:
    """The chips a calibrate command line names: as given (once each), ``--all``, or chip0."""
    from labctl.errors import UsageError
    from labctl.rigs.config import configured_chip_names

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

    from labctl.analysis.summary import _finite, render
    from labctl.errors import LabctlError

    outcomes: dict[str, object] = {}
    errors: dict[str, LabctlError] = {}
    with StepProgress(enabled=not quiet) as progress:

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
    protocol: protocol_option("drift") = None,
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

    with StepProgress(enabled=not quiet) as progress:
        outcome = reported(run)
    print_outcome(outcome, as_json)


def maintain(
    chip: Annotated[
        str, typer.Argument(metavar="[CHIP]", help="Chip to deploy on and keep; chip0 is the built-in twin.")
    ] = "chip0",
    every: Annotated[str, typer.Option("--every", metavar="TIME", help="Interval between looks: 1h, 30m, 2d.")] = "1h",
    until: Annotated[
        str, typer.Option("--until", metavar="TIME", help="How long after programming to keep it: 24h, 7d.")
    ] = "24h",
    refresh: Annotated[
        bool, typer.Option("--refresh/--no-refresh", help="Re-program drifted cells (or only re-fit the scale).")
    ] = True,
    targets: Annotated[
        Optional[Path], typer.Option("--targets", metavar="FILE", help="Target conductances (µS) to deploy.")
    ] = None,
    protocol: protocol_option("maintain") = None,
    data: DataOption = None,
    config: ConfigOption = None,
    fresh: FreshOption = False,
    seed: SeedOption = None,
    size: SizeOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    resume_run: Annotated[
        bool, typer.Option("--resume", help="Continue this chip's newest unfinished maintain run instead.")
    ] = False,
) -> None:
    """Deploy the targets, then keep them computing what was asked: every interval, probe MVMs
    judged against the intended matrix, the output scale re-fitted, drifted cells refreshed.

    Journalled per look, so an interrupted run resumes at its next look; on the twin the
    waits advance its virtual clock.
    """
    from labctl import api

    def run():
        if resume_run:
            run_id = api.resumable_run(chip, "maintain", data)
            return api.resume(run_id, data=data, config=config, progress=progress)
        return api.run_maintain(chip, every_s=parse_duration(every, "--every"),
                                until_s=parse_duration(until, "--until"), refresh=refresh,
                                targets=targets, seed=seed, size=size, protocol=protocol, data=data, config=config,
                                fresh=fresh, progress=progress)

    with StepProgress(enabled=not quiet) as progress:
        outcome = reported(run)
    print_outcome(outcome, as_json)


def validate(
    chip: Annotated[str, typer.Argument(metavar="[CHIP]", help="Chip to run the network on; chip0 is the twin.")
                    ] = "chip0",
    model: Annotated[
        Optional[Path], typer.Option("--model", metavar="FILE.npz", help="W0, b0, W1, b1, ... (default: digits example).")
    ] = None,
    dataset: Annotated[
        Optional[Path], typer.Option("--dataset", metavar="FILE.npz", help="Test data: x (samples x inputs), y (labels).")
    ] = None,
    at: Annotated[
        Optional[str], typer.Option("--at", metavar="TIME[,TIME...]", help="Later looks after programming: 1h,24h.")
    ] = None,
    maintain: Annotated[
        bool, typer.Option("--maintain/--no-maintain", help="Before each later look: the protocol's [maintain] refreshes, then the "
                                                   "tiles' output scales re-fitted.")
    ] = True,
    samples: Annotated[Optional[int], typer.Option("--samples", metavar="N", help="Use the first N test samples.")
                       ] = None,
    model_seed: Annotated[int, typer.Option("--model-seed", metavar="N", help="Seed of the example's training.")] = 0,
    copies: Annotated[
        Optional[int], typer.Option("--copies", metavar="N", min=1,
                                    help="At most N pairs per weight where the arrays have room (1: one pair).")
    ] = None,
    with_chips: Annotated[
        Optional[list[str]], typer.Option("--with", metavar="CHIP",
                                          help="Another chip the tiles may use after this one's arrays (repeatable).")
    ] = None,
    noise_model: Annotated[
        Optional[Path], typer.Option("--noise-model", metavar="FILE.json",
                                     help="Train the example with this export-model file's noise.")
    ] = None,
    noise_at: Annotated[
        str, typer.Option("--noise-at", metavar="TIME", help="The noise as it is this long after programming.")
    ] = "0s",
    clip_sigmas: Annotated[
        Optional[float], typer.Option("--clip-sigmas", metavar="K",
                                      help="Train the example with each layer clipped to K σ of its weights.")
    ] = None,
    protocol: protocol_option("validate") = None,
    data: DataOption = None,
    config: ConfigOption = None,
    fresh: FreshOption = False,
    seed: SeedOption = None,
    size: SizeOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run a network's dense layers on the chip and report its accuracy beside the float model's.

    Without --model and --dataset, a small MLP is trained on scikit-learn's 8x8 digits
    (pip install 'labctl[examples]') and validated on its held-out quarter.
    """
    from labctl import api

    def run():
        times = tuple(parse_duration(part, "--at") for part in at.split(",")) if at else None
        noise_s = 0.0 if noise_at.strip() in ("0", "0s") else parse_duration(noise_at, "--noise-at")
        return api.run_validate(chip, model=model, dataset=dataset, at_s=times, maintain=maintain, samples=samples,
                                model_seed=model_seed, copies=copies, with_chips=tuple(with_chips or ()), noise_model=noise_model, noise_at_s=noise_s,
                                clip_sigmas=clip_sigmas, seed=seed, size=size, protocol=protocol, data=data,
                                config=config, fresh=fresh, progress=progress)

    with StepProgress(enabled=not quiet) as progress:
        outcome = reported(run)
    print_outcome(outcome, as_json)


def solve(
    chip: Annotated[str, typer.Argument(metavar="[CHIP]", help="Chip with a closed loop; loop0 is the sram-64 twin.")
                    ] = "loop0",
    matrix: Annotated[
        Optional[Path], typer.Option("--matrix", metavar="A.npy", help="The square matrix A (default: the example).")
    ] = None,
    rhs: Annotated[
        Optional[Path], typer.Option("--rhs", metavar="B.npy", help="Right-hand sides: one per column of B.")
    ] = None,
    example: Annotated[
        Optional[str], typer.Option("--example", metavar="NAME", help="Built-in system: random-spd or heat.")
    ] = None,
    rows: Annotated[Optional[int], typer.Option("--rows", metavar="N", help="The example's size (64, 128, 256...).")
                    ] = None,
    columns: Annotated[Optional[int], typer.Option("--columns", metavar="K", help="The example's right-hand sides.")
                       ] = None,
    refine: Annotated[
        Optional[int], typer.Option("--refine", metavar="STEPS", help="Digital residual corrections after the step.")
    ] = None,
    protocol: protocol_option("solve") = None,
    data: DataOption = None,
    config: ConfigOption = None,
    fresh: FreshOption = False,
    seed: SeedOption = None,
    size: SizeOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Solve A·x = b for every column of B in one analogue step each, on the board's closed loop.

    Reports the error against numpy's float64 solution and against a digital solver at the
    chip's precision, and the board time per solve. Larger systems than the arrays are
    solved by recursive block inversion.
    """
    from labctl import api

    def run():
        return api.run_solve(chip, matrix=matrix, rhs=rhs, example=example, rows=rows, columns=columns,
                             refine_steps=refine, seed=seed, size=size, protocol=protocol, data=data, config=config,
                             fresh=fresh, progress=progress)

    with StepProgress(enabled=not quiet) as progress:
        outcome = reported(run)
    print_outcome(outcome, as_json)


def resume(
    run_id: RunIdArgument,
    data: DataOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Continue an interrupted run from its last completed step (a drift run from its last read)."""
    from labctl import api

    with StepProgress(enabled=not quiet) as progress:
        outcome = reported(lambda: api.resume(run_id, data=data, config=config, progress=progress))
    print_outcome(outcome, as_json)

