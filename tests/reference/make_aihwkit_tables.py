"""Write the aihwkit reference tables the twin's statistics tests compare against.

Run where aihwkit installs (it is not a dependency of labctl)::

    pip install torch==2.13.0 && pip install --no-deps aihwkit==1.1.0
    python tests/reference/make_aihwkit_tables.py

It draws 100,000 devices a level from aihwkit's own noise models and records, per
level, the spread and 99 percentiles of each quantity, so CI without aihwkit still
compares the twin with aihwkit's numbers rather than with the project's copy of its
formulas. The tables are committed; this script is how they were made.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from aihwkit import __version__ as aihwkit_version
from aihwkit.inference import PCMLikeNoiseModel, ReRamWan2022NoiseModel

DEVICES = 100_000
PERCENTILES = list(range(1, 100))
PCM_G_MAX = 25.0
PCM_LEVELS = [2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0, 22.5]
PCM_TIMES = {"20s": 20.0, "1h": 3600.0, "12h": 43200.0, "1d": 86400.0}
RRAM_G_MAX = 40.0
RRAM_LEVELS = [2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]
RRAM_TIMES = {"1s": 1.0, "1d": 86400.0}
HERE = Path(__file__).parent


def summary(values: torch.Tensor) -> dict[str, object]:
    v = values.double().numpy()
    return {"mean": float(v.mean()), "std": float(v.std()),
            "percentiles": [float(x) for x in np.percentile(v, PERCENTILES)]}


def pcm_tables() -> dict[str, object]:
    model = PCMLikeNoiseModel(g_max=PCM_G_MAX)
    levels = []
    for level in PCM_LEVELS:
        target = torch.full((DEVICES,), level, dtype=torch.float64)
        g_prog = model.apply_programming_noise_to_conductance(target)
        nu = model.generate_drift_coefficients(target)
        entry: dict[str, object] = {"g_us": level, "programming_error_us": summary(g_prog - target),
                                    "nu": summary(nu)}
        for name, t in PCM_TIMES.items():
            g_final = model.apply_drift_noise_to_conductance(g_prog, nu, t)
            g_drift = g_prog * ((t + model.t_0) / model.t_0) ** (-nu)
            # the read noise alone, relative to the drifted conductance it rides on
            entry[f"read_noise_relative_{name}"] = summary((g_final - g_drift) / g_drift.abs())
        levels.append(entry)
    return {"model": "PCMLikeNoiseModel", "g_max_us": PCM_G_MAX, "t0_s": model.t_0, "t_read_s": model.t_read,
            "times_s": PCM_TIMES, "levels": levels}


def rram_tables() -> dict[str, object]:
    model = ReRamWan2022NoiseModel(g_max=RRAM_G_MAX)
    levels = []
    for level in RRAM_LEVELS:
        target = torch.full((DEVICES,), level, dtype=torch.float64)
        entry: dict[str, object] = {"g_us": level}
        for name, t in RRAM_TIMES.items():
            entry[f"error_{name}_us"] = summary(model.apply_drift_noise_to_conductance(target, target, t) - target)
        levels.append(entry)
    return {"model": "ReRamWan2022NoiseModel", "g_max_us": RRAM_G_MAX, "times_s": RRAM_TIMES, "levels": levels}


def main() -> None:
    torch.manual_seed(2022)
    for name, table in (("aihwkit_pcm.json", pcm_tables()), ("aihwkit_rram_wan2022.json", rram_tables())):
        table = {"aihwkit": aihwkit_version, "devices_per_level": DEVICES, "percentiles": PERCENTILES, **table}
        (HERE / name).write_text(json.dumps(table, indent=1) + "\n")
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
