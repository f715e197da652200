"""Calibrate across presets, sizes and seeds: does the acceptance hold beyond the default chip?

An acceptance that holds only on the default preset, size or seed is not met. This runs
``labctl calibrate`` (in process, each preset with the protocol lab.toml would give it:
``calibrate-rram`` for RRAM) on every combination and prints one line each, then the
count that passed and the deployed-matrix figures' range.

    python bench/grid.py [--presets pcm,rram,sram-64] [--sizes 64,128,256] [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import tempfile
import time

PROTOCOL = {"pcm": "calibrate", "rram": "calibrate-rram", "sram-64": "calibrate"}


def one(preset: str, size: int, seed: int) -> dict:
    from pathlib import Path

    from labctl import api

    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "lab.toml"
        config.write_text(f'[chips.gridchip]\ntwin = {{ preset = "{preset}", seed = {seed}, size = "{size}x{size}" }}\n'
                          f'calibrate_protocol = "{PROTOCOL[preset]}"\n')
        started = time.perf_counter()
        outcome = api.calibrate("gridchip", config=config, data=Path(folder) / "data")
        wall = time.perf_counter() - started
    summary = outcome.summary()
    failed = [check["name"] for check in summary["acceptance"] if not check["passed"]]
    mvm = summary["steps"]["mvm"]
    return {"preset": preset, "size": size, "seed": seed, "passed": summary["passed"], "failed": failed,
            "converged": summary["converged_fraction"], "sigma_us": summary["error_sigma_us"],
            "l2": mvm["deployed_l2_mean"], "floor": mvm["noise_floor_l2"], "wall_s": wall,
            "clean": mvm.get("without_defects_l2_mean", float("nan")), "worst_output": mvm["deployed_worst_output"],
            "signed": mvm["signed_l2_mean"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="pcm,rram,sram-64")
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    results = []
    for preset in args.presets.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                r = one(preset, size, seed)
                results.append(r)
                print(f"{preset:<8} {size:>4}x{size:<4} seed {seed}  {'pass' if r['passed'] else 'FAIL'}  "
                      f"converged {100 * r['converged']:6.2f} %  σ {r['sigma_us']:.3f} µS  "
                      f"deployed L2 {100 * r['l2']:5.1f} % (floor {100 * r['floor']:4.1f} %, without defects "
                      f"{100 * r['clean']:4.1f} %), worst output {100 * r['worst_output']:4.1f} %, signed "
                      f"{100 * r['signed']:4.1f} %  {r['wall_s']:5.1f} s"
                      + (f"  missed: {', '.join(r['failed'])}" if r["failed"] else ""), flush=True)
    passed = sum(r["passed"] for r in results)
    print(f"\n{passed} of {len(results)} passed their acceptance")


if __name__ == "__main__":
    main()
