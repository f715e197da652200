"""What the commands share: exit codes, the common options, and parsing of durations and temperatures."""

from __future__ import annotations

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
def protocol_option(builtin: str):
    """``--protocol``: a protocol file or built-in name to run instead of the command's own."""
    return Annotated[
        Optional[Path],
        typer.Option("--protocol", metavar="FILE|NAME", help=f"Protocol TOML to run instead of the built-in {builtin}."),
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


def parse_duration(text: str, option: str = "--duration") -> float:
    import re

    from labctl.errors import UsageError

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise UsageError(f"{option} {text!r}: expected a number with s, m, h or d, for example 12h")
    value = float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    if value <= 0:
        raise UsageError(f"{option} {text!r}: must be positive")
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

