"""Write-verify over the TCP twin: the batched algorithm against a naive per-cell loop.

The twin is served on a loopback socket by this process and driven through pyvisa-py,
as a bench instrument would be. The batched run programs the whole array; the naive
loop (the same algorithm, but every read and every pulse one cell per command, as a
per-cell script does it) runs on a few rows and is extrapolated to the whole array by
its cost per cell. Ratios are against the naive loop of the same run.

    python bench/write_verify.py [--size 256] [--naive-rows 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from labctl_calibration.readout import Readout
from labctl_calibration.targets import ramp
from labctl_calibration.write_verify import WriteVerify, WriteVerifyParams
from labctl_drivers import Board, VisaTransport
from labctl_drivers.testing import CountingTransport
from labctl_sims.server import RigServer, TwinRig


class PerCellBoard:
    """The board as a per-cell script drives it: one command per cell."""

    def __init__(self, board: Board) -> None:
        object.__setattr__(self, "_board", board)

    def __getattr__(self, name):
        return getattr(self._board, name)

    def __setattr__(self, name, value):
        setattr(self._board, name, value)

    def read_array(self) -> np.ndarray:
        g = self._board.geometry()
        return np.array([[self._board.read_cell(r, c) for c in range(g.cols)] for r in range(g.rows)])

    def program_array(self, amplitudes: np.ndarray) -> None:
        for r, c in zip(*np.nonzero(amplitudes)):
            self._board.program_cell(int(r), int(c), int(amplitudes[r, c]))


def measure(rows: int, cols: int, per_cell: bool) -> dict[str, float]:
    rig = TwinRig.build(rows=rows, cols=cols, seed=0)
    with RigServer(rig, pty=False) as server:
        transport = CountingTransport(VisaTransport(server.visa_resource("board")))
        board = Board(transport)
        params = WriteVerifyParams()
        readout = Readout(board.adc().lsb_ua, params.read_voltage)
        driven = PerCellBoard(board) if per_cell else board
        trips0 = transport.round_trips
        start = time.perf_counter()
        result = WriteVerify(driven, readout, params).run(ramp((rows, cols), 2.0, 20.0, 8))
        wall = time.perf_counter() - start
        board.close()
    cells = rows * cols
    trips = transport.round_trips - trips0
    return {"cells": cells, "wall_s": wall, "round_trips": trips,
            "trips_per_cell_iteration": trips / (cells * (result.iterations + 1)),
            "pulses_per_cell": float(result.pulses.mean()), "converged": result.converged_fraction,
            "iterations": result.iterations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--naive-rows", type=int, default=2)
    args = parser.parse_args()
    naive = measure(args.naive_rows, args.size, per_cell=True)
    batched = measure(args.size, args.size, per_cell=False)
    scale = batched["cells"] / naive["cells"]
    naive_full_s = naive["wall_s"] * scale
    print(f"write-verify of a {args.size}x{args.size} twin over TCP (pyvisa-py); the naive per-cell loop ran on "
          f"{naive['cells']} cells and is extrapolated x{scale:g}")
    print(f"{'mode':<22}{'wall s':>10}{'round trips':>13}{'trips/cell-iter':>17}{'pulses/cell':>13}"
          f"{'converged':>11}{'speed-up':>10}")
    print(f"{'naive per-cell (extr.)':<22}{naive_full_s:>10.1f}{naive['round_trips'] * scale:>13.0f}"
          f"{naive['trips_per_cell_iteration']:>17.4f}{naive['pulses_per_cell']:>13.2f}"
          f"{100 * naive['converged']:>10.2f}%{1:>10.1f}")
    print(f"{'batched (array)':<22}{batched['wall_s']:>10.2f}{batched['round_trips']:>13d}"
          f"{batched['trips_per_cell_iteration']:>17.6f}{batched['pulses_per_cell']:>13.2f}"
          f"{100 * batched['converged']:>10.2f}%{naive_full_s / batched['wall_s']:>10.0f}")


if __name__ == "__main__":
    main()
