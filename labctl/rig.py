"""Opening the instruments of one chip's bench (a "rig") and closing them again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from drivers.board import Board, Identity
from drivers.errors import DriverError
from drivers.transport import InProcessTransport
from labctl.config import ChipSpec
from labctl.errors import RunFailed


@dataclass
class Rig:
    spec: ChipSpec
    board: Board
    identity: Identity
    twin: Any = None  # the in-process twin board, when the chip is simulated (tests read it)

    def snapshot(self) -> dict[str, Any]:
        return {"board": self.board.snapshot()}


@contextmanager
def open_rig(spec: ChipSpec) -> Iterator[Rig]:
    """Connect, identify and check the geometry; always close on the way out."""
    board, twin = _connect(spec)
    try:
        try:
            identity = board.identity()
            geometry = board.geometry()
        except DriverError as err:
            raise RunFailed(f"{spec.name}: board did not identify: {err}") from err
        if (geometry.rows, geometry.cols) != (spec.rows, spec.cols):
            raise RunFailed(
                f"{spec.name}: board reports a {geometry.rows}x{geometry.cols} array, "
                f"configuration says {spec.rows}x{spec.cols}"
            )
        yield Rig(spec, board, identity, twin)
    finally:
        board.close()


def _connect(spec: ChipSpec) -> tuple[Board, Any]:
    if spec.kind == "twin":
        import sims

        chip = sims.ChipModel(preset=spec.preset, seed=spec.seed, rows=spec.rows, cols=spec.cols)
        twin = sims.BoardTwin(chip, serial=f"{spec.name.upper()}-{spec.seed}")
        transport = InProcessTransport(twin.feed, resource=f"twin://{spec.name}")
        return Board(transport, safe_limits=spec.safe_limits), twin
    raise RunFailed(f"{spec.name}: no transport for chip kind {spec.kind!r}")
