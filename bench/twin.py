"""Twin physics throughput at 256x256: array reads, array pulses, MVMs, and through the wire handler.

Each figure is also given as a ratio to a baseline measured in the same run: drawing
65,536 fresh normal deviates with numpy, the least work any noisy array read needs.
Where numba is installed, the array pulse runs through the compiled loops (``sims.fused``)
and is timed on the numpy path as well, in the same run.

    python bench/twin.py [--size 256] [--preset pcm]
    python bench/twin.py --pulse-matrix     # the array pulse on every preset and size
"""

from __future__ import annotations

import argparse
import os
import timeit

import numpy as np

import labctl_sims as sims
from labctl_drivers.framing import encode_block
from labctl_sims import kernels


def seconds_per_call(fn, number: int) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def figures(n: int = 256, preset: str = "pcm") -> tuple[float, list[tuple[str, float]]]:
    """The baseline (s) and each operation's seconds per call."""
    chip = _drifting_chip(preset, n)
    board = sims.BoardTwin(chip)
    rng = np.random.default_rng(0)
    amplitudes = _amplitudes(rng, n)
    dac = rng.integers(-127, 128, n)
    prog_message = b"PROG:ARR " + encode_block(amplitudes) + b"\n"

    baseline = _normals_baseline(rng, n)
    pulse_path = "compiled loops" if kernels.fused() is not None else "numpy path"
    cases = [
        ("array read (READ:ARR? physics)", lambda: chip.read_codes(0, slice(None), 0.2, 8), 200),
        ("row read", lambda: chip.read_codes(0, slice(5, 6), 0.2, 8), 2000),
        (f"array pulse (PROG:ARR physics, {pulse_path})", _pulse(chip, amplitudes), 50),
        ("MVM", lambda: chip.mvm_codes(0, dac, 0.2), 200),
        ("READ:ARR? through the handler", lambda: board.feed(b"READ:ARR?\n"), 200),
        ("PROG:ARR through the handler", lambda: board.feed(prog_message), 50),
    ]
    timings = [(name, seconds_per_call(fn, number)) for name, fn, number in cases]
    if pulse_path == "compiled loops":
        numpy_chip = _on_numpy_path(lambda: _drifting_chip(preset, n))
        timings.insert(3, ("array pulse (numpy path)", seconds_per_call(_pulse(numpy_chip, amplitudes), 50)))
    return baseline, timings


PRESETS_AND_SIZES = tuple((preset, n) for preset in ("pcm", "rram", "sram-64") for n in (64, 128, 256))


def pulse_figures(preset: str, n: int) -> tuple[float, float]:
    """The baseline (s) for an n x n array and its array pulse (s), on the path this
    machine takes (the compiled loops where numba is installed)."""
    rng = np.random.default_rng(0)
    amplitudes = _amplitudes(rng, n)
    baseline = _normals_baseline(rng, n)
    return baseline, seconds_per_call(_pulse(_drifting_chip(preset, n), amplitudes), 50)


def _amplitudes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Every cell pulsed, SET or RESET at random, as the board's int16 millivolts."""
    return np.where(rng.random((n, n)) < 0.5, 1400, -1600).astype(np.int16)


def _normals_baseline(rng: np.random.Generator, n: int) -> float:
    """Seconds to draw n x n fresh float32 normals: the least any noisy array read needs."""
    return seconds_per_call(lambda: rng.standard_normal(n * n, dtype=np.float32), 200)


def _pulse(chip: sims.ChipModel, amplitudes: np.ndarray):
    return lambda: chip.program(0, slice(None), amplitudes, 100)


def _drifting_chip(preset: str, n: int) -> sims.ChipModel:
    chip = sims.ChipModel(preset, seed=0, rows=n, cols=n)
    chip.advance(3600.0)  # drift active
    return chip


def _on_numpy_path(build):
    """``build()`` with the numpy path chosen: a twin keeps the path it was built on."""
    before = os.environ.get(kernels.CHOICE_VARIABLE)
    os.environ[kernels.CHOICE_VARIABLE] = "numpy"
    try:
        return build()
    finally:
        if before is None:
            del os.environ[kernels.CHOICE_VARIABLE]
        else:
            os.environ[kernels.CHOICE_VARIABLE] = before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--preset", default="pcm")
    parser.add_argument("--pulse-matrix", action="store_true",
                        help="only the array pulse, on every preset at 64, 128 and 256 square")
    args = parser.parse_args()
    if args.pulse_matrix:
        print(f"{'preset':<10}{'size':>9}{'pulse ms':>10}{'normals ms':>12}{'x baseline':>12}")
        for preset, n in PRESETS_AND_SIZES:
            baseline, pulse = pulse_figures(preset, n)
            print(f"{preset:<10}{f'{n}x{n}':>9}{pulse * 1e3:>10.3f}{baseline * 1e3:>12.3f}{pulse / baseline:>12.2f}")
        return
    n = args.size
    baseline, timings = figures(n, args.preset)
    print(f"twin physics, {args.preset} {n}x{n}; baseline: {n * n} fresh normals = {baseline * 1e3:.3f} ms")
    print(f"{'operation':<50}{'ms/op':>10}{'ops/s':>10}{'x baseline':>12}")
    for name, t in timings:
        print(f"{name:<50}{t * 1e3:>10.3f}{1 / t:>10.0f}{t / baseline:>12.2f}")


if __name__ == "__main__":
    main()
