"""The digits example on the chip: accuracy beside the float model, across presets and seeds.

Runs ``labctl validate`` (in process) on each preset's twin for each chip seed, at once
after programming and a day later, with and without re-fitting the tiles' output scales,
and prints one line each with the float model's and the chip-precision model's accuracy
from the same run, and the wall time.

    python bench/network.py [--presets pcm,sram-64,rram] [--seeds 0,1,2] [--at 86400] [--copies N]
        [--size 128x128] [--clip-sigmas K] [--maintained-only]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

SIZES = {"pcm": "256x256", "rram": "256x256", "sram-64": None}
PROTOCOL = {"pcm": "validate", "rram": "validate-rram", "sram-64": "validate"}


def one(preset: str, seed: int, at_s: float, maintain: bool, copies: int | None, size: str | None = None,
        clip_sigmas: float | None = None) -> dict:
    from labctl import api

    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "lab.toml"
        geometry = (size or SIZES[preset]) if SIZES[preset] else None  # sram-64 keeps its own
        size_key = f', size = "{geometry}"' if geometry else ""
        name = f"net{os.getpid()}"  # a lock per bench process: benches may run side by side
        config.write_text(f'[chips.{name}]\ntwin = {{ preset = "{preset}", seed = {seed}{size_key} }}\n')
        started = time.perf_counter()
        outcome = api.run_validate(name, at_s=(at_s,), maintain=maintain, config=config,
                                   data=Path(folder) / "data", protocol=PROTOCOL[preset], copies=copies,
                                   clip_sigmas=clip_sigmas)
        wall = time.perf_counter() - started
    net = outcome.summary()["steps"]["network"]
    return {"float": net["float_accuracy"], "quantised": net["quantised_accuracy"],
            "now": net["looks"][0]["accuracy"], "later": net["looks"][1]["accuracy"], "wall_s": wall,
            "ci": net["looks"][0]["ci95"], "copies": [t["copies"] for t in net["tiles"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="pcm,sram-64,rram")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--at", type=float, default=86_400.0, help="seconds after programming of the later look")
    parser.add_argument("--copies", type=int, default=None, help="at most this many pairs per weight (protocol's: 16)")
    parser.add_argument("--size", help="ROWSxCOLS of the pcm and rram twins (default 256x256)")
    parser.add_argument("--clip-sigmas", type=float, help="the example trained with each layer clipped to K σ")
    parser.add_argument("--maintained-only", action="store_true", help="only the run with the maintenance loop")
    args = parser.parse_args()
    for preset in args.presets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for maintain in (True,) if args.maintained_only else (True, False):
                r = one(preset, seed, args.at, maintain, args.copies, args.size, args.clip_sigmas)
                print(f"{preset:<8} seed {seed}  float {100 * r['float']:.2f} %  chip precision "
                      f"{100 * r['quantised']:.2f} %  on chip {100 * r['now']:.2f} % "
                      f"[{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}]  at {args.at / 3600:g} h "
                      f"{100 * r['later']:.2f} % ({'scales re-fitted' if maintain else 'no re-fit'})  "
                      f"pairs per weight {r['copies']}  {r['wall_s']:.1f} s", flush=True)


if __name__ == "__main__":
    main()
