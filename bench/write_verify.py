"""Write-verify cost: array- and row-batched against a per-cell loop, on the in-process twin.

Prints round trips per cell-iteration and wall time, each as a ratio against the
per-cell baseline measured in the same run (the same algorithm, with every read and
pulse sent one cell at a time, as a per-cell script would).

    python bench/write_verify.py [--size 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import sims
from calibration.readout import Readout
from calibration.targets import ramp
from calibration.write_verify import WriteVerify, WriteVerifyParams
from drivers import Board
from drivers.testing import CountingTransport


class PerCellBoard:
    """The board as a per-cell script drives it: one command per cell."""

    def __init__(self, board: Board) -> None:
        self._board = board

    def __getattr__(self, name):
        return getattr(self._board, name)

    def __setattr__(self, name, value):
        if name == "_board":
            object.__setattr__(self, name, value)
        else:
            setattr(self._board, name, value)

    def read_array(self) -> np.ndarray:
        g = self._board.geometry()
        return np.array([[self._board.read_cell(r, c) for c in range(g.cols)] for r in range(g.rows)])

    def program_array(self, amplitudes: np.ndarray) -> None:
        for r, c in zip(*np.nonzero(amplitudes)):
            self._board.program_cell(int(r), int(c), int(amplitudes[r, c]))


def measure(size: int, mode: str) -> dict[str, float]:
    chip = sims.ChipModel(seed=0, rows=size, cols=size)
    transport = CountingTransport(sims.BoardTwin(chip).feed)
    board = Board(transport)
    params = WriteVerifyParams(batch="row" if mode == "row" else "array")
    driven = PerCellBoard(board) if mode == "per-cell" else board
    readout = Readout(board.adc().lsb_ua, params.read_voltage)
    start_trips = transport.round_trips
    start = time.perf_counter()
    result = WriteVerify(driven, readout, params).run(ramp((size, size), 2.0, 20.0, 8))
    wall = time.perf_counter() - start
    cell_iterations = size * size * (result.iterations + 1)
    return {
        "wall_s": wall,
        "round_trips": transport.round_trips - start_trips,
        "trips_per_cell_iteration": (transport.round_trips - start_trips) / cell_iterations,
        "converged": result.converged_fraction,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    baseline = measure(args.size, "per-cell")
    print(f"write-verify, {args.size}x{args.size} twin; ratios against the per-cell loop of this run")
    print(f"{'mode':<10}{'wall s':>10}{'wall ratio':>12}{'round trips':>13}{'trips/cell-iter':>17}{'trip ratio':>12}{'converged':>11}")
    for mode in ("per-cell", "row", "array"):
        m = baseline if mode == "per-cell" else measure(args.size, mode)
        print(
            f"{mode:<10}{m['wall_s']:>10.3f}{m['wall_s'] / baseline['wall_s']:>12.4f}{m['round_trips']:>13d}"
            f"{m['trips_per_cell_iteration']:>17.5f}{m['round_trips'] / baseline['round_trips']:>12.5f}"
            f"{100 * m['converged']:>10.2f}%"
        )


if __name__ == "__main__":
    main()
