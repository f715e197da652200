"""Commands about rigs: the chips lab.toml knows, and a check of each instrument."""

from __future__ import annotations

from typing import Annotated

import typer

from labctl.cli.options import ConfigOption
from labctl.cli.output import reported


def rigs(
    config: ConfigOption = None,
    drivers: Annotated[bool, typer.Option("--drivers", help="List the installed board and SMU drivers "
                                          "instead (labctl's own and those other packages register).")] = False,
) -> None:
    """List the chips the configuration knows and how each is reached."""
    from rich.console import Console
    from rich.table import Table

    from labctl.rigs.config import BoardDriver, load_config, window_of

    if drivers:
        _list_board_drivers()
        return
    lab, source = reported(lambda: load_config(config))
    table = Table(title=f"rigs ({source})", title_justify="left")
    for column in ("chip", "board", "smu", "temperature", "window µS"):
        table.add_column(column)
    for name, chip in sorted(lab.chips.items()):
        if chip.twin is not None:
            size = chip.twin.size or "preset size"
            board = f"twin in process ({chip.twin.preset}, seed {chip.twin.seed}, {size})"
            smu = temperature = "twin"
        else:
            smu, temperature = (_instrument(field) for field in (chip.smu, chip.temperature))
            board = chip.board or "-"
            if isinstance(chip.board, BoardDriver):
                board = f"{chip.board.driver} driver" + (f" at {chip.board.resource}" if chip.board.resource else "")
                board += "".join(f", {key}={value}" for key, value in sorted(chip.board.options.items()))
        low, high = window_of(chip)
        table.add_row(name, board, smu, temperature, f"{low:g}-{high:g}")
    Console().print(table)


def _instrument(field) -> str:
    """A resource as written, a field driver as its name and resource, or '-'."""
    if field is None:
        return "-"
    return field if isinstance(field, str) else f"{field.driver} at {field.resource}"


def _list_board_drivers() -> None:
    from rich.console import Console
    from rich.table import Table

    from labctl_drivers.plugins import BOARD_GROUP, INSTRUMENT_GROUP, driver_origin, registered

    table = Table(title=f"drivers (entry point groups {BOARD_GROUP}, {INSTRUMENT_GROUP})", title_justify="left")
    for column in ("kind", "driver", "factory", "package"):
        table.add_column(column)
    for kind, group in (("board", BOARD_GROUP), ("smu", INSTRUMENT_GROUP)):
        for name, point in sorted(registered(group).items()):
            table.add_row(kind, name, point.value, driver_origin(point))
    Console().print(table)


def doctor(
    chip: Annotated[str, typer.Argument(metavar="[CHIP]", help="Chip whose instruments to check.")] = "chip0",
    config: ConfigOption = None,
) -> None:
    """Connect to every instrument of a chip, identify it, check its limits, and print a table."""
    from rich.console import Console
    from rich.table import Table

    from labctl.rigs.doctor import examine

    rows = reported(lambda: examine(chip, config))
    table = Table(title=f"doctor {chip}", title_justify="left")
    for column in ("instrument", "resource", "identity", "check", "result"):
        table.add_column(column)
    for row in rows:
        mark = "[green]ok[/green]" if row.ok else "[red]FAIL[/red]"
        table.add_row(row.instrument, row.resource, row.identity, row.detail, mark)
    Console().print(table)
    if not all(row.ok for row in rows):
        raise typer.Exit(1)

