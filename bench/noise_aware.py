"""Plain against noise-aware training of the digits example, on the chip at once and a day later.

For each seed, the example is trained twice (the same seed): plainly, and with the chip's
measured noise from an export-model file injected into every training forward pass (as
it will be ``--noise-at`` after programming). Both go through ``labctl validate`` on the
same twin chip (same seed), each weight on ``--copies`` pairs (1: one pair, the chip's noise
as measured), judged at once and ``--at`` later with the tiles' output scales re-fitted
(``--no-refit``: kept) and no cell refreshed. It prints each pair, the mean paired difference
with its standard error over seeds, and McNemar's exact test on the pooled samples.

    python bench/noise_aware.py --noise-model FILE.json [--preset pcm] [--size 128x128] [--seeds 0,1,2,3,4]
        [--at 86400] [--clip-sigmas K]

Make FILE.json with ``labctl drift`` (it measures ν) and ``labctl export-model RUN``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def run(preset: str, seed: int, at_s: float, noise_model: Path | None, noise_at_s: float, copies: int,
        maintain: bool, clip_sigmas: float | None, size: str | None = None) -> dict:
    import pandas as pd

    from labctl import api

    with tempfile.TemporaryDirectory() as folder:
        config, name = Path(folder) / "lab.toml", f"na{os.getpid()}s{seed}"  # a lock per bench process
        size_key = f', size = "{size}"' if size else ""
        config.write_text(f'[chips.{name}]\ntwin = {{ preset = "{preset}", seed = {seed}{size_key} }}\n')
        outcome = api.run_validate(name, at_s=(at_s,), maintain=maintain, config=config,
                                   data=Path(folder) / "data", model_seed=seed, noise_model=noise_model,
                                   noise_at_s=noise_at_s, copies=copies,
                                   clip_sigmas=clip_sigmas)
        rows = pd.read_parquet(Path(folder) / "data" / "validation")
    net = outcome.summary()["steps"]["network"]
    return {"float": net["float_accuracy"], "looks": [look["accuracy"] for look in net["looks"]],
            "correct": {k: rows[rows["look"] == k].sort_values("sample")["correct"].to_numpy() for k in (0, 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise-model", type=Path, required=True)
    parser.add_argument("--preset", default="pcm")
    parser.add_argument("--size", help="the twin's array size, ROWSxCOLS (default: the preset's)")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--at", type=float, default=86_400.0, help="seconds after programming of the later look")
    parser.add_argument("--noise-at", type=float, default=86_400.0, help="the injected noise's time after programming")
    parser.add_argument("--copies", type=int, default=1, help="pairs per weight, on the chip and in training")
    parser.add_argument("--no-refit", action="store_true", help="keep the first look's output scales")
    parser.add_argument("--clip-sigmas", type=float, help="both trainings clip each layer to this many σ")
    args = parser.parse_args()
    from labctl.analysis.statistics import mcnemar_exact

    differences: dict[int, list[float]] = {0: [], 1: []}
    discordant = {0: [0, 0], 1: [0, 0]}
    for seed in (int(s) for s in args.seeds.split(",")):
        plain = run(args.preset, seed, args.at, None, 0.0, args.copies, not args.no_refit, args.clip_sigmas, args.size)
        aware = run(args.preset, seed, args.at, args.noise_model, args.noise_at, args.copies, not args.no_refit,
                    args.clip_sigmas, args.size)
        for k in (0, 1):
            differences[k].append(aware["looks"][k] - plain["looks"][k])
            discordant[k][0] += int((aware["correct"][k] & ~plain["correct"][k]).sum())
            discordant[k][1] += int((~aware["correct"][k] & plain["correct"][k]).sum())
        print(f"seed {seed}: float plain {100 * plain['float']:.2f} %, noise-aware {100 * aware['float']:.2f} %; on chip "
              f"at once {100 * plain['looks'][0]:.2f} % -> {100 * aware['looks'][0]:.2f} %, at {args.at / 3600:g} h "
              f"{100 * plain['looks'][1]:.2f} % -> {100 * aware['looks'][1]:.2f} %", flush=True)
    for k, name in ((0, "at once"), (1, f"at {args.at / 3600:g} h")):
        d = differences[k]
        mean = sum(d) / len(d)
        se = (sum((x - mean) ** 2 for x in d) / (len(d) - 1)) ** 0.5 / len(d) ** 0.5 if len(d) > 1 else float("nan")
        b, c = discordant[k]
        print(f"{name}: noise-aware minus plain {100 * mean:+.2f} points (± {100 * se:.2f} standard error over "
              f"{len(d)} seeds, paired t = {mean / se:.2f} on {len(d) - 1} degrees of freedom; better on "
              f"{sum(x > 0 for x in d)}, worse on {sum(x < 0 for x in d)}); McNemar on pooled samples: {b} only "
              f"noise-aware right, {c} only plain right, p = {mcnemar_exact(b, c):.3g}")


if __name__ == "__main__":
    main()
