"""Commands of the built-in software twin: describe a preset, serve a twin rig."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from labctl.cli.output import fail, reported


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
        fail(f"unknown preset {preset!r}: known presets are {', '.join(sorted(PRESETS))}", 2)
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
    ir_drop: Annotated[
        Optional[float],
        typer.Option("--ir-drop", metavar="OHM", help="Wire resistance per cell segment, ohm; 0 turns IR drop off "
                     "[default: the preset's, aihwkit's wire-to-device ratio]."),
    ] = None,
    settings: Annotated[
        Optional[list[str]],
        typer.Option("--set", metavar="NAME=VALUE", help="Change one of the preset's numbers (see 'labctl sim "
                     "describe'), e.g. rtn_fraction=0 or read_disturb_per_read=0; repeatable."),
    ] = None,
    clock: Annotated[
        str, typer.Option("--clock", metavar="virtual|wall",
                          help="virtual: the chip's time moves only with what it does and SIM:CLOCK:ADV; wall: "
                               "also at least as fast as real time, for drivers that wait for a set point.")
    ] = "virtual",
) -> None:
    """Serve a twin rig (board, SMU, temperature controller over one chip) on pty and TCP until Ctrl-C."""
    from labctl.rigs.serve import parse_settings, serve_forever

    def serve() -> None:
        overrides = parse_settings(settings or [])
        if ir_drop is not None:
            overrides["wire_ohm"] = ir_drop
        serve_forever(preset=preset, seed=seed, size=size, faults=fault or [], host=host, port=port, chip=chip,
                      overrides=overrides, clock=clock)

    reported(serve)


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ", ".join(_format_value(v) for v in value)
    return str(value)

