"""Which chip a name refers to, and how to reach it.

With no configuration at all, ``chip0`` is the built-in software twin, so a new user
(and CI) gets a real run on a fresh machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from drivers.board import PulseLimits
from labctl.errors import UsageError

MAX_TWIN_SIDE = 1024


@dataclass(frozen=True)
class ChipSpec:
    name: str
    kind: Literal["twin"]
    preset: str
    seed: int
    rows: int
    cols: int
    window_us: tuple[float, float]  # the conductance range targets may ask for
    safe_limits: PulseLimits  # tighter than, or equal to, the board's hard limits

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "preset": self.preset,
            "seed": self.seed,
            "geometry": [1, self.rows, self.cols],
            "window_us": list(self.window_us),
            "safe_limits": {
                "set_max_mv": self.safe_limits.set_max_mv,
                "reset_max_mv": self.safe_limits.reset_max_mv,
                "width_max_ns": self.safe_limits.width_max_ns,
            },
        }


BUILTIN_CHIPS: dict[str, ChipSpec] = {
    "chip0": ChipSpec(
        name="chip0",
        kind="twin",
        preset="pcm",
        seed=0,
        rows=256,
        cols=256,
        window_us=(0.0, 25.0),
        safe_limits=PulseLimits(set_max_mv=2500, reset_max_mv=3500, width_max_ns=1000),
    )
}


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--size {text!r}: expected ROWSxCOLS, for example 64x64")
    rows, cols = int(match[1]), int(match[2])
    if not (1 <= rows <= MAX_TWIN_SIDE and 1 <= cols <= MAX_TWIN_SIDE):
        raise UsageError(f"--size {text!r}: rows and cols must be 1..{MAX_TWIN_SIDE}")
    return rows, cols


def resolve_chip(name: str, seed: int | None = None, size: str | None = None) -> ChipSpec:
    """The chip called ``name``, with twin-only overrides applied."""
    spec = BUILTIN_CHIPS.get(name)
    if spec is None:
        known = ", ".join(sorted(BUILTIN_CHIPS))
        raise UsageError(f"unknown chip {name!r}: known chips are {known}")
    if seed is not None:
        if seed < 0:
            raise UsageError(f"--seed {seed}: must be 0 or more")
        spec = replace(spec, seed=seed)
    if size is not None:
        rows, cols = parse_size(size)
        spec = replace(spec, rows=rows, cols=cols)
    return spec
