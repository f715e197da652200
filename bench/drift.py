"""Drift characterisation on the twin: 256x256, 12 h, 60 reads, 3 temperatures, in one process.

Prints the wall time of the whole `labctl drift` run, how much faster than real time
the virtual clock ran, and the run's cost against a baseline measured in the same
run: the same number of bare 256x256 array reads from the twin, with no store, fits
or instruments around them.

    python bench/drift.py [--size 256] [--reads 60] [--hours 12]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from labctl import api
from labctl_sims.server import TwinRig


def figures(size: int = 256, reads: int = 60, hours: float = 12.0) -> dict[str, float]:
    temperatures = (300.0, 330.0, 360.0)
    rig = TwinRig.build(rows=size, cols=size)
    start = time.perf_counter()
    for _ in range(reads * len(temperatures)):
        rig.board.feed(b"READ:ARR?\n")
    baseline = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as data:
        rigs = []
        start = time.perf_counter()
        outcome = api.run_drift("chip0", size=f"{size}x{size}", duration_s=hours * 3600,
                                reads=reads, temperatures_k=temperatures, data=data, keep_rig=rigs)
        wall = time.perf_counter() - start
    drift = outcome.steps["drift"]
    return {"wall_s": wall, "virtual_s": rigs[0].twin.chip.clock.now(), "baseline_s": baseline,
            "temperatures": len(temperatures), "nu_median": drift["nu_median"],
            "activation_ev": drift["activation_ev"], "mvm_global_worst_fs": drift["mvm_global_worst_fs"],
            "mvm_raw_worst_fs": drift["mvm_raw_worst_fs"], "acceptance": outcome.summary()["acceptance"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--reads", type=int, default=60)
    parser.add_argument("--hours", type=float, default=12.0)
    args = parser.parse_args()
    f = figures(args.size, args.reads, args.hours)
    wall, virtual, baseline = f["wall_s"], f["virtual_s"], f["baseline_s"]
    print(f"drift, {args.size}x{args.size}, {args.hours:g} h x {f['temperatures']} temperatures, "
          f"{args.reads} reads each (calibration and write-verify included)")
    print(f"  wall time                {wall:8.2f} s   (aim: <= 30 s)")
    print(f"  virtual time             {virtual / 3600:8.2f} h   ({virtual / wall:,.0f}x real time)")
    print(f"  baseline: bare reads     {baseline:8.2f} s   (run / baseline = {wall / baseline:.1f})")
    print(f"  ν median {f['nu_median']:.4f}, Ea {f['activation_ev']:.3f} eV, "
          f"compensated MVM worst {100 * f['mvm_global_worst_fs']:.2f} % FS")


if __name__ == "__main__":
    main()
