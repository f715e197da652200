"""Every benchmark in one table: ``python -m bench`` (from the repository root).

Each figure sits beside the baseline it is measured against, taken in the same run on
the same machine, and the ratio of the two; the ratio is the figure to compare across
machines. ``--quick`` shrinks the workloads (for a smoke run, not for the README).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling scripts, importable by name


@dataclass
class Row:
    benchmark: str
    figure: str
    value: str
    baseline: str
    ratio: str
    aim: str = ""


def write_verify(quick: bool) -> list[Row]:
    import write_verify as wv

    size = 64 if quick else 256
    naive = wv.measure(2, size, per_cell=True)
    batched = wv.measure(size, size, per_cell=False)
    scale = batched["cells"] / naive["cells"]
    naive_s = naive["wall_s"] * scale
    speedup = naive_s / batched["wall_s"]
    return [
        Row("write-verify, TCP", f"{size}x{size} batched, wall", f"{batched['wall_s']:.2f} s",
            f"per-cell loop {naive_s:.0f} s (extrapolated)", f"{speedup:.0f}x faster",
            "<= 20 s, >= 100x: " + ("met" if batched["wall_s"] <= 20 and speedup >= 100 else "missed")),
        Row("write-verify, TCP", "round trips per cell-iteration", f"{batched['trips_per_cell_iteration']:.6f}",
            f"per-cell loop {naive['trips_per_cell_iteration']:.2f}",
            f"{naive['trips_per_cell_iteration'] / batched['trips_per_cell_iteration']:.0f}x fewer"),
        Row("write-verify, TCP", "converged / pulses per cell", f"{100 * batched['converged']:.2f} % / "
            f"{batched['pulses_per_cell']:.2f}", f"per-cell loop {100 * naive['converged']:.2f} % / "
            f"{naive['pulses_per_cell']:.2f}", "same algorithm"),
    ]


def twin(quick: bool) -> list[Row]:
    import twin as tw

    size = 128 if quick else 256
    baseline, timings = tw.figures(size)
    rows = []
    for name, seconds in timings:
        aim = ""
        if name.startswith(("array pulse (PROG", "array read")) and size == 256:
            aim = "<= 1.8x (1 ms): " + ("met" if seconds <= 1.8 * baseline else "missed, see below")
        rows.append(Row(f"twin physics {size}x{size}", name, f"{seconds * 1e3:.3f} ms",
                        f"{size * size} normals {baseline * 1e3:.3f} ms", f"{seconds / baseline:.2f}x", aim))
    for preset, n in tw.PRESETS_AND_SIZES:
        if (preset == "pcm" and n == size) or (quick and n > 64):
            continue
        baseline, seconds = tw.pulse_figures(preset, n)
        aim = ("<= 1.8x: " + ("met" if seconds <= 1.8 * baseline else "missed")) if n == 256 else ""
        rows.append(Row(f"twin physics {preset} {n}x{n}", "array pulse", f"{seconds * 1e3:.3f} ms",
                        f"{n * n} normals {baseline * 1e3:.3f} ms", f"{seconds / baseline:.2f}x", aim))
    return rows


def wire(quick: bool) -> list[Row]:
    import wire as wi

    results = wi.figures(64 if quick else 256, 0.5 if quick else 2.0)
    base_trips, base_reads = results["in-process"]
    return [Row("wire, board", f"{name}: round trips/s, array reads/s", f"{trips:,.0f}, {reads:,.1f}",
                f"in-process {base_trips:,.0f}, {base_reads:,.1f}",
                f"{trips / base_trips:.3f}, {reads / base_reads:.3f}")
            for name, (trips, reads) in results.items() if name != "in-process"]


def store(quick: bool) -> list[Row]:
    import store as st

    results, notes = st.figures(200_000 if quick else 2_000_000, 2_000 if quick else 20_000)

    def rate(name: str) -> float:
        seconds, rows = results[name]
        return rows / seconds

    ours, raw, csv = rate("labctl end to end"), rate("raw pyarrow ParquetWriter"), rate("pandas CSV")
    rows = [Row("store", f"{results['labctl end to end'][1]:,} reads rows, labctl end to end (recorder + TableWriter)",
                f"{ours:,.0f} rows/s", f"raw pyarrow {raw:,.0f} rows/s; pandas CSV {csv:,.0f} rows/s",
                f"{ours / raw:.2f} of pyarrow's rate; {ours / csv:.1f}x CSV's",
                ">= 0.70 and >= 10x: " + ("met" if ours / raw >= 0.7 and ours / csv >= 10 else "missed"))]
    if "QCoDeS dataset, array parameter" in results:
        array, numeric = rate("QCoDeS dataset, array parameter"), rate("QCoDeS dataset, numeric rows")
        rows.append(Row("store", "against QCoDeS: its array parameter (values/s), its numeric rows", f"{ours:,.0f} rows/s",
                        f"{array:,.0f} values/s; {numeric:,.0f} rows/s", f"{ours / array:.2f}x; {ours / numeric:.0f}x",
                        ">= 1 and >= 100x: " + ("met" if ours >= array and ours >= 100 * numeric else "missed")))
    if "PyMeasure Results CSV" in results:
        pymeasure = rate("PyMeasure Results CSV")
        rows.append(Row("store", "against PyMeasure's CSV Results", f"{ours:,.0f} rows/s", f"{pymeasure:,.0f} rows/s",
                        f"{ours / pymeasure:.1f}x", ">= 10x: " + ("met" if ours >= 10 * pymeasure else "missed")))
    rows += [Row("store", note, "-", "-", "-", "-") for note in notes]
    return rows


def drift(quick: bool) -> list[Row]:
    import drift as dr

    size, reads, hours = (64, 20, 12.0) if quick else (256, 60, 12.0)
    f = dr.figures(size, reads, hours)
    return [Row("drift", f"{size}x{size}, {hours:g} h x {f['temperatures']} temperatures, {reads} reads each",
                f"{f['wall_s']:.1f} s wall for {f['virtual_s'] / 3600:.1f} h virtual",
                f"{reads * f['temperatures']} bare array reads {f['baseline_s']:.2f} s",
                f"{f['wall_s'] / f['baseline_s']:.1f}x; {f['virtual_s'] / f['wall_s']:,.0f}x real time",
                "<= 30 s: " + ("met" if f["wall_s"] <= 30 else "missed")),
            Row("drift", "MVM worst error at the end of 12 h, drift-compensated", f"{100 * f['mvm_global_worst_fs']:.2f} % FS",
                f"uncompensated {100 * f['mvm_raw_worst_fs']:.2f} % FS", "-",
                protocol_aim(f["acceptance"], "drift_compensated_error_fs", percent=True)),
            Row("drift", "activation energy of drift, fitted", f"{f['activation_ev']:.3f} eV",
                "the twin's 0.300 eV (ground truth, known to the bench only)", f"{f['activation_ev'] / 0.3:.2f}x")]


def board_time(quick: bool) -> list[Row]:
    import board_time as bt

    size = 64 if quick else 256
    f = bt.figures(size)
    now, before = f["now"], f["previous"]
    errors = f["readout_errors"]

    def listed(name: str, index: int, unit: str, digits: int, scale: float = 1.0) -> str:
        return ", ".join(f"{scale * e[index]:.{digits}f}" for e in errors[name]) + unit

    def mean(values) -> float:
        return sum(values) / len(values)

    converged = {name: mean(fractions) for name, fractions in f["converged"].items()}
    mean_errors = {name: (mean([e[0] for e in rows]), mean([e[1] for e in rows])) for name, rows in errors.items()}
    no_worse = all(mean_errors["now"][i] <= mean_errors["previous"][i] for i in (0, 1))
    spent, least = f["write_verify_bytes"]
    seeds = f"seeds {bt.READOUT_SEEDS[0]}-{bt.READOUT_SEEDS[-1]}"
    return [
        Row("board time", f"labctl calibrate, {size}x{size} PCM twin, fresh read-out", f"{now['board_s']:.1f} s",
            f"the read-out calibration before (16 rows, 1 PLC) {before['board_s']:.1f} s",
            f"{now['board_s'] / before['board_s']:.2f}x",
            "<= 35 s: " + ("met" if now["board_s"] <= 35 else "missed") if size == 256 else ""),
        Row("board time", "of which the read-out calibration", f"{now['steps']['readout']['board_s']:.1f} s",
            f"before {before['steps']['readout']['board_s']:.1f} s",
            f"{now['steps']['readout']['board_s'] / before['steps']['readout']['board_s']:.2f}x"),
        Row("board time", f"converged cells, mean of seeds {bt.CONVERGENCE_SEEDS[0]}-{bt.CONVERGENCE_SEEDS[-1]}",
            f"{100 * converged['now']:.2f} %", f"before {100 * converged['previous']:.2f} %", "-",
            "the same: " + ("met" if converged["now"] >= converged["previous"] - 0.005 else "missed")),
        Row("board time", f"read-out gain error / offset error against the twin's trims, {seeds} (IR drop off), "
            "each seed and their mean",
            listed("now", 0, " %", 3, 100) + f" (mean {100 * mean_errors['now'][0]:.3f} %) / "
            + listed("now", 1, " LSB", 2) + f" (mean {mean_errors['now'][1]:.2f} LSB)",
            "before " + listed("previous", 0, " %", 3, 100) + f" (mean {100 * mean_errors['previous'][0]:.3f} %) / "
            + listed("previous", 1, " LSB", 2) + f" (mean {mean_errors['previous'][1]:.2f} LSB)", "-",
            "no worse in the mean: " + ("met" if no_worse else "missed")),
        Row("board time", "write-verify bytes on the wire (ramp 2-20 µS)", f"{spent / 1e6:.2f} MB",
            f"least its pulses and verifications need {least / 1e6:.2f} MB", f"{spent / least:.2f}x",
            "<= 1.2x: " + ("met" if spent <= 1.2 * least else "missed")),
    ]


def protocol_aim(acceptance: list[dict], name: str, percent: bool = False) -> str:
    """The aim as the protocol's own acceptance states it, so the bench and the protocol cannot disagree."""
    for check in acceptance:
        if check.get("name") == name:
            limit = f"{100 * check['limit']:g} % FS" if percent else f"{check['limit']:g}"
            return f"{check['comparison']} {limit}: " + ("met" if check["passed"] else "missed")
    return f"{name}: not in the protocol's acceptance"


def best_of(command: list[str], times: int) -> float:
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


HEAVY = ("numpy", "pandas", "pyarrow", "matplotlib", "pyvisa", "serial", "scipy")


def startup(quick: bool) -> list[Row]:
    times = 3 if quick else 7
    python = best_of([sys.executable, "-c", "pass"], times)
    help_s = best_of([sys.executable, "-m", "labctl", "--help"], times)
    numpy = best_of([sys.executable, "-c", "import numpy"], times)
    probe = ("import sys, contextlib, io\nsys.argv = ['labctl', '--help']\nfrom labctl.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main()\n"
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    return [Row("start-up", "labctl --help", f"{help_s * 1e3:.0f} ms", f"python -c pass {python * 1e3:.0f} ms "
                f"(import numpy alone {numpy * 1e3:.0f} ms)", f"{help_s / python:.1f}x",
                "fast, no heavy import: " + ("met" if not heavy else f"missed ({', '.join(heavy)} imported)"))]


def peak_rss_mb(code: str) -> float:
    """Peak resident memory of a fresh interpreter running ``code``: its own VmHWM (Linux),
    which, unlike ``ru_maxrss``, does not carry over the forking parent's peak."""
    probe = code + "\nprint(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=HERE.parent,
                          check=False)
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    return int(done.stdout.split()[-1]) / 1024


def memory(quick: bool) -> list[Row]:
    size = 64 if quick else 256
    with tempfile.TemporaryDirectory() as data:
        run = peak_rss_mb(f"from labctl import api; api.calibrate(size='{size}x{size}', data={data!r})")
    libraries = peak_rss_mb("import numpy, pandas, pyarrow.parquet, pydantic")
    return [Row("memory", f"peak RSS, full {size}x{size} calibration (in-process twin)", f"{run:.0f} MB",
                f"numpy+pandas+pyarrow+pydantic imported {libraries:.0f} MB", f"{run / libraries:.2f}x")]


def _bare_write_verify_seconds(size: int, iterations: int) -> float:
    """The floor under write-verify: as many array pulses and averaged array reads, straight into the twin."""
    import numpy as np

    import labctl_sims as sims
    from labctl_drivers.framing import encode_block

    board = sims.BoardTwin(sims.ChipModel("pcm", seed=0, rows=size, cols=size))
    program = b"PROG:ARR " + encode_block(np.full((size, size), 900))
    board.feed(b"READ:AVG 64\n")
    started = time.perf_counter()
    for _ in range(iterations):
        board.feed(program + b"\n")
        board.feed(b"READ:ARR?\n")
    return time.perf_counter() - started


def calibration(quick: bool) -> list[Row]:
    """The default calibration's accuracy, against the spread IBM's iterative programming leaves on PCM hardware
    (aihwkit's σ_prog), with the protocol's own acceptance as the aims."""
    import numpy as np

    from labctl_calibration.targets import ramp
    from labctl import api
    from labctl_sims import physics
    from labctl_sims.presets import PRESETS

    size = 64 if quick else 256
    with tempfile.TemporaryDirectory() as data:
        started = time.perf_counter()
        outcome = api.calibrate(size=f"{size}x{size}", data=data)
        wall = time.perf_counter() - started
    summary = outcome.summary()
    targets = ramp((size, size), 2.0, 20.0, 8)  # the built-in protocol's pattern
    one_shot = float(np.sqrt(np.mean(physics.prog_sigma_us(targets, PRESETS["pcm"]) ** 2)))
    iterations = summary["iterations"]
    floor = _bare_write_verify_seconds(size, iterations)
    mvm = summary["steps"]["mvm"]["corrected_worst_fs"]
    deployed = summary["steps"]["mvm"]
    converged = summary["converged_fraction"]
    return [
        Row("calibration", f"{size}x{size} default protocol (5 steps, in process), wall", f"{wall:.1f} s",
            f"its {iterations} write-verify pulse+read pairs, bare twin: {floor:.2f} s", f"{wall / floor:.1f}x"),
        Row("calibration", f"converged (non-stuck cells read within {summary['tolerance_us']:g} µS)",
            f"{100 * converged:.2f} %", "-", "-", protocol_aim(summary["acceptance"], "converged_fraction")),
        Row("calibration", "final error σ (as the board reads it, 1/f read noise included)",
            f"{summary['error_sigma_us']:.3f} µS", f"IBM hardware σ_prog of the targets {one_shot:.3f} µS",
            f"{summary['error_sigma_us'] / one_shot:.2f}x", protocol_aim(summary["acceptance"], "error_sigma_us")),
        Row("calibration", "MVM self-consistency worst error (against conductances read), held-out, corrected",
            f"{100 * mvm:.2f} % FS", f"raw {100 * summary['steps']['mvm']['raw_worst_fs']:.2f} % FS", "-",
            protocol_aim(summary["acceptance"], "mvm_worst_error_fs", percent=True)),
        Row("calibration", "deployed matrix (the targets): relative L2 error, held-out inputs, mean / worst vector",
            f"{100 * deployed['deployed_l2_mean']:.2f} % / {100 * deployed['deployed_l2_worst']:.2f} %",
            f"noise floor (two MVMs of one input) {100 * deployed['noise_floor_l2']:.2f} %",
            f"{deployed['deployed_l2_vs_floor']:.1f}x", "<= 1.5 % mean: " + (
                "met" if deployed["deployed_l2_mean"] <= 0.015 else "missed")),
        Row("calibration", "deployed matrix: worst output / largest ideal output; signed pairs L2 mean",
            f"{100 * deployed['deployed_worst_output']:.2f} %; {100 * deployed['signed_l2_mean']:.2f} %",
            f"signed noise floor {100 * deployed['signed_noise_floor_l2']:.2f} %",
            f"{deployed['signed_l2_mean'] / deployed['signed_noise_floor_l2']:.1f}x",
            "<= 1 %; <= 2.5 %: " + ("met" if deployed["deployed_worst_output"] <= 0.01
                                     and deployed["signed_l2_mean"] <= 0.025 else "missed")),
    ]


BENCHMARKS: dict[str, Callable[[bool], list[Row]]] = {
    "calibration": calibration, "board_time": board_time, "write_verify": write_verify, "twin": twin, "wire": wire,
    "store": store, "drift": drift,
    "startup": startup, "memory": memory,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads: a smoke run")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run just these")
    args = parser.parse_args()
    rows: list[Row] = []
    for name in args.only or BENCHMARKS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        rows += BENCHMARKS[name](args.quick)
        print(f"  {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"labctl benchmarks{' (quick)' if args.quick else ''}; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores\n")
    print("| benchmark | figure | value | baseline (same run) | ratio | aim |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.benchmark} | {row.figure} | {row.value} | {row.baseline} | {row.ratio} | {row.aim} |")


if __name__ == "__main__":
    main()
