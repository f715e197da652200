"""Closed-loop solving on the sram-64 twin: accuracy against the digital solver at the chip's
precision, across sizes and seeds, and board time against MVMs plus a digital iterative solver.

Part 1 runs ``solve_system`` on random symmetric positive-definite systems (condition 8, 8
right-hand sides) at 64, 128 and 256 rows, for several chip seeds. Each line gives the loop's
mean and worst relative error against float64, the digital solver at the chip's precision
(same leaves, weights as programmed, DAC/ADC quantisation), their ratio, the leaves, and the
board time per right-hand side.

Part 2 solves one 48-row system three ways on the same programmed chip:

* the closed loop in one step, and with two digital residual corrections;
* conjugate gradients over the wire. Each iteration's A·p is one ``MVM?`` on each array,
  with the MVM path's per-column gain and offset fitted against the read-back conductances.

It prints the board time per solve and the error reached. Every figure is from the board's
own clock.

    python bench/solve.py [--seeds 0,1,2] [--sizes 64,128,256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from labctl_calibration.accuracy import output_scale
from labctl_calibration.mvm import choose_gain


def twin_solver(seed: int, refine_steps: int = 0):
    import labctl_sims as sims
    from labctl_calibration.closed_loop import ClosedLoopSolver, SolveParams
    from labctl_calibration.readout import Readout
    from labctl_calibration.write_verify import WriteVerify, WriteVerifyParams
    from labctl_drivers import Board, InProcessTransport

    chip = sims.ChipModel("sram-64", seed=seed)
    board = Board(InProcessTransport(sims.BoardTwin(chip).feed, resource="twin://bench"))
    verify = WriteVerify(board, Readout(lsb_ua=board.adc().lsb_ua, read_voltage=0.2),
                         WriteVerifyParams(tolerance_us=0.5, band_us=0.1, batch="auto"))
    return board, ClosedLoopSolver(board, verify, SolveParams(low_us=0.2, refine_steps=refine_steps))


def accuracy(seeds: list[int], sizes: list[int]) -> None:
    from labctl_calibration.linear_solve import solve_system
    from labctl_calibration.systems import random_spd

    print("| rows | seed | loop error mean / worst | digital at chip precision | ratio | leaves | excluded lines "
          "| board ms per rhs | programming board s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for seed in seeds:
            _, solver = twin_solver(seed)
            a = random_spd(n, 8.0, seed)
            b = np.random.default_rng([seed, n]).standard_normal((n, 8))
            started = time.perf_counter()
            r = solve_system(solver, a, b)
            chip, digital = r.chip_errors, r.digital_errors
            print(f"| {n} | {seed} | {100 * np.nanmean(chip):.2f} / {100 * np.nanmax(chip):.2f} % "
                  f"| {100 * digital.mean():.2f} % | {np.nanmean(chip) / digital.mean():.2f} | {len(r.leaves)} "
                  f"| {len(solver.excluded)} | {1e3 * r.board_s.mean():.2f} | {r.programming_board_s:.1f} "
                  f"| {time.perf_counter() - started:.1f} |")


def mvm_maps(board, solver, rng, vectors: int = 32) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per-column gain and offset of each array's MVM path (codes against the currents its
    read-back conductances predict), at one MVM:GAIN for both (it is the board's setting)."""
    used = solver.block_lines
    probe = np.zeros(solver.size, dtype=np.int16)
    probe[used] = 127
    board.set_mvm_gain(1)
    largest = 0.0
    for array in (0, 1):
        board.array = array
        largest = max(largest, float(np.abs(board.mvm(probe)).max()))  # every used row at full input
    board.set_mvm_gain(choose_gain(largest, 2047, solver.size, 0.9))
    maps = {}
    for array in (0, 1):
        board.array = array
        board.averaging = 256
        g = solver.verify.readout.conductance_us(board.read_array())  # µS, this array as read now
        board.averaging = 16
        codes, currents = [], []
        for _ in range(vectors):
            dac = np.zeros(solver.size)
            dac[used] = np.rint(rng.uniform(-1, 1, used.size) * 127)
            codes.append(board.mvm(dac.astype(np.int16)).astype(float))
            currents.append(dac / 127 * board.read_voltage @ g)
        maps[array] = output_scale(np.array(currents), np.array(codes), np.ones(vectors, dtype=bool))
    board.array = 0
    return maps


def matvec_on_chip(board, solver, maps, x: np.ndarray) -> np.ndarray:
    """A·x in the user's units from one MVM on each array."""
    used = solver.block_lines
    scale = np.abs(x).max() or 1.0
    dac = np.zeros(solver.size)
    dac[used] = np.rint(x / scale * 127)
    y = np.zeros(solver.size)
    for array, sign in ((0, 1), (1, -1)):
        board.array = array
        gain, offset = maps[array]
        y += sign * (board.mvm(dac.astype(np.int16)) - offset) / gain
    board.array = 0
    # I = Σ_i v_i·G_ic with v = dac/127·V_read: the columns give Aᵀ·x (A is symmetric here); floors cancel
    return y[used] * scale / (board.read_voltage * solver.mapping.us_per_unit)


def versus_iterative(seed: int) -> None:
    from labctl_calibration.block_inverse import relative_errors
    from labctl_calibration.systems import random_spd

    board, solver = twin_solver(seed)
    n = 48
    a = random_spd(n, 8.0, seed)
    b = np.random.default_rng([seed, 9]).standard_normal(n)
    exact = np.linalg.solve(a, b)
    solver.program(a)
    rows = []
    for steps in (0, 2):
        outcome = solver.solve(b, steps)
        rows.append((f"closed loop, {steps} refinement(s)", outcome.board_s, relative_errors(outcome.x, exact)[0]))
    board.averaging = 16
    board.read_voltage = 0.2
    rng = np.random.default_rng(seed)
    maps = mvm_maps(board, solver, rng)
    x, r = np.zeros(n), b.copy()
    p, rs = r.copy(), r @ r
    started = board.clock_s()
    for k in range(1, 13):
        ap = matvec_on_chip(board, solver, maps, p)
        alpha = rs / (p @ ap)
        x, r = x + alpha * p, r - alpha * ap
        rs, rs_old = r @ r, rs
        p = r + rs / rs_old * p
        if k in (1, 2, 4, 8, 12):
            rows.append((f"CG on chip MVMs, {k} iteration(s)", board.clock_s() - started,
                         relative_errors(x, exact)[0]))
    print(f"\nseed {seed}, 48 rows, condition 8: board time per solve and error against float64\n")
    print("| method | board ms | error |")
    print("|---|---|---|")
    for name, seconds, error in rows:
        print(f"| {name} | {1e3 * seconds:.2f} | {100 * error:.2f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sizes", default="64,128,256")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    accuracy(seeds, [int(s) for s in args.sizes.split(",")])
    for seed in seeds[:2]:
        versus_iterative(seed)


if __name__ == "__main__":
    main()
