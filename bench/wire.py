"""Wire throughput per transport: query round trips and 256x256 array reads per second.

The twin rig is served by this process on a pty and a loopback socket; each figure is
also given as a ratio to the in-process transport measured in the same run, which is
the cost of the driver and the twin without any wire.

    python bench/wire.py [--size 256] [--seconds 2]
"""

from __future__ import annotations

import argparse
import time

from labctl_drivers import Board, InProcessTransport, SerialTransport, VisaTransport
from labctl_sims.server import RigServer, TwinRig


def rate(fn, seconds: float) -> float:
    fn()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    return count / (time.perf_counter() - start)


def figures(size: int = 256, seconds: float = 2.0) -> dict[str, tuple[float, float]]:
    """Per transport: round trips/s and array reads/s."""
    rig = TwinRig.build(rows=size, cols=size)
    with RigServer(rig) as server:
        transports = {
            "in-process": lambda: InProcessTransport(rig.board.feed),
            "pty (pyserial)": lambda: SerialTransport(server.serial_path("board")),
            "TCP (pyvisa-py)": lambda: VisaTransport(server.visa_resource("board")),
            "pty (pyvisa-py ASRL)": lambda: VisaTransport(f"ASRL{server.serial_path('board')}::INSTR"),
        }
        results = {}
        for name, make in transports.items():
            board = Board(make())
            board.geometry()
            results[name] = (rate(lambda: board.query("READ:AVG?"), seconds), rate(board.read_array, seconds))
            board.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    results = figures(args.size, args.seconds)
    base_trips, base_reads = results["in-process"]
    print(f"wire throughput, board of a {args.size}x{args.size} twin; ratios against in-process")
    print(f"{'transport':<22}{'round trips/s':>15}{'ratio':>8}{'array reads/s':>15}{'ratio':>8}")
    for name, (trips, reads) in results.items():
        print(f"{name:<22}{trips:>15.0f}{trips / base_trips:>8.3f}{reads:>15.1f}{reads / base_reads:>8.3f}")


if __name__ == "__main__":
    main()
