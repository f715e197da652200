"""Board time on a real rig, as the twin's clock charges it: what `labctl calibrate chip0` costs.

On a rig the time is the board's: bytes on the 1 MB/s link, pulses, conversions and SMU
integrations, which the twin's virtual clock charges as it serves them. Three figures,
each beside a baseline from the same run:

* a fresh `labctl calibrate chip0` (256x256 PCM twin), per step, against the same protocol
  with the read-out calibration it had before (16 reference rows spread 0.5-22 µS, 1 PLC,
  equal weights, each column pooled by its own fit's errors), with the converged fraction;
* the read-out's gain and offset errors against the twin's trims (IR drop off, so the
  figure is the calibration's and not the wires'), both designs, seeds 0-3, and the
  converged fraction of both protocols over seeds 0-2 (one seed's figures move by half a
  point either way between two designs of equal merit);
* write-verify's bytes on the wire against the least its pulses and verifications need
  with the protocol's commands: each iteration's pulses in the cheaper of PROG:LIST and
  PROG:ARR, each pulsed row read back once (READ:ROWS?), the first read of the array.

    python bench/board_time.py [--size 256]
"""

from __future__ import annotations

import argparse
import tempfile
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PREVIOUS_READOUT = {"levels_us": tuple(float(v) for v in np.round(np.linspace(0.5, 22.0, 16), 2)), "nplc": 1.0,
                    "weighted": False, "split_half": False}


def previous_protocol(folder: Path) -> Path:
    """The built-in calibrate protocol with the earlier read-out design."""
    text = (HERE.parent / "protocols" / "calibrate.toml").read_text()
    start = text.index("[readout]")
    end = text.index("\n[", start + 1)
    table = "[readout]\n" + "\n".join(f"{key} = {list(value) if isinstance(value, tuple) else str(value).lower()}"
                                      for key, value in PREVIOUS_READOUT.items()) + "\n"
    path = folder / "calibrate-previous-readout.toml"
    path.write_text(text[:start] + table + text[end:])
    return path


READOUT_SEEDS = (0, 1, 2, 3)
CONVERGENCE_SEEDS = (0, 1, 2)


def calibrate_costs(size: int, protocol: Path | None = None, seed: int = 0) -> dict:
    from labctl import api

    with tempfile.TemporaryDirectory() as data:
        outcome = api.calibrate(size=f"{size}x{size}", data=data, fresh=True, protocol=protocol, seed=seed)
    summary = outcome.summary()
    steps = {name: figures["cost"] for name, figures in summary["steps"].items() if "cost" in figures}
    return {"board_s": summary["board_cost"]["board_s"], "wire_bytes": summary["board_cost"]["wire_bytes"],
            "steps": steps, "converged": summary["converged_fraction"]}


def readout_errors(params: dict, seed: int, size: int) -> tuple[float, float, float]:
    """Gain (relative RMS) and offset (LSB RMS) errors against the twin's trims, and the board time."""
    from labctl_calibration.readout_calibration import ReadoutCalibrationParams, calibrate_readout
    from labctl_calibration.write_verify import WriteVerifyParams
    from labctl_drivers import Board, InProcessTransport, Keithley2450
    from labctl_sims.server import TwinRig

    rig = TwinRig.build("pcm", rows=size, cols=size, seed=seed, overrides={"wire_ohm": 0.0})
    board, smu = Board(InProcessTransport(rig.board.feed)), Keithley2450(InProcessTransport(rig.smu.feed))
    started = rig.chip.clock.now()
    calibration = calibrate_readout(board, smu, ReadoutCalibrationParams(**params), WriteVerifyParams())
    board_s = rig.chip.clock.now() - started
    truth = rig.chip.ground_truth()  # the bench may read it: it judges, it does not calibrate
    gain = float(np.sqrt(np.mean((calibration.gain / truth.adc_gain[0] - 1) ** 2)))
    offset = float(np.sqrt(np.mean((calibration.offset_lsb - truth.adc_offset_lsb[0]) ** 2)))
    return gain, offset, board_s


class _Ledger:
    """What write-verify pulsed and read, iteration by iteration."""

    def __init__(self) -> None:
        self.pulsed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.reads: list[tuple[str, int]] = []

    def on_read(self, phase, iteration, rows, codes, g_us, t_s, temperature_k) -> None:
        self.reads.append((phase, len(rows)))

    def on_pulses(self, iteration, rows, cols, amplitude_mv, width_ns, g_before_us, g_after_us, t_s) -> None:
        self.pulsed[iteration] = (np.asarray(rows), np.asarray(cols))

    def on_iteration(self, iteration, active, total) -> None:
        pass


def write_verify_bytes(size: int, seed: int = 0) -> tuple[int, int]:
    """Bytes write-verify put on the wire (the protocol's, ramp targets 2-20 µS), and the least
    its pulses and verifications need."""
    from labctl_calibration.readout import Readout
    from labctl_calibration.targets import ramp
    from labctl_calibration.write_verify import WriteVerify, WriteVerifyParams
    from labctl_drivers import Board, InProcessTransport
    from labctl_drivers.testing import CountingTransport
    from labctl_sims.server import TwinRig

    rig = TwinRig.build("pcm", rows=size, cols=size, seed=seed)
    transport = CountingTransport(InProcessTransport(rig.board.feed))
    board = Board(transport)
    protocol = tomllib.loads((HERE.parent / "protocols" / "calibrate.toml").read_text())
    params = WriteVerifyParams(**protocol["write_verify"])  # the built-in protocol's: batch "auto"
    readout = Readout(board.adc().lsb_ua, params.read_voltage)
    board.capabilities()  # asked once before counting, as a driver caches it
    ledger = _Ledger()
    before = transport.bytes_sent + transport.bytes_received
    WriteVerify(board, readout, params, ledger).run(ramp((size, size), 2.0, 20.0, 8))
    spent = transport.bytes_sent + transport.bytes_received - before
    cells = size * size
    least = 2 * cells  # the first look at every cell
    for rows, _ in ledger.pulsed.values():
        least += min(6 * len(rows), 2 * cells)  # the pulses, in the cheaper encoding
        least += 2 * size * len(np.unique(rows))  # each pulsed row read back once
    return spent, least


def figures(size: int) -> dict:
    """Seed 0's costs of both protocols, their converged fractions over ``CONVERGENCE_SEEDS``,
    both read-out designs' errors over ``READOUT_SEEDS``, and write-verify's bytes."""
    with tempfile.TemporaryDirectory() as folder:
        protocols = {"now": None, "previous": previous_protocol(Path(folder))}
        runs = {name: [calibrate_costs(size, protocol, seed) for seed in CONVERGENCE_SEEDS]
                for name, protocol in protocols.items()}
    errors = {name: [readout_errors(params, seed, size) for seed in READOUT_SEEDS]
              for name, params in (("now", {}), ("previous", PREVIOUS_READOUT))}
    spent, least = write_verify_bytes(size)
    return {"now": runs["now"][0], "previous": runs["previous"][0],
            "converged": {name: [run["converged"] for run in seeds] for name, seeds in runs.items()},
            "readout_errors": errors, "write_verify_bytes": (spent, least)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    f = figures(args.size)
    print("| step | board time | on the wire | before: board time | on the wire |")
    print("|---|---|---|---|---|")
    for step, cost in f["now"]["steps"].items():
        old = f["previous"]["steps"].get(step, {})
        print(f"| {step} | {cost['board_s']:.2f} s | {cost['wire_bytes'] / 1e6:.2f} MB | "
              f"{old.get('board_s', float('nan')):.2f} s | {old.get('wire_bytes', float('nan')) / 1e6:.2f} MB |")
    print(f"| total | {f['now']['board_s']:.1f} s | {f['now']['wire_bytes'] / 1e6:.2f} MB | "
          f"{f['previous']['board_s']:.1f} s | {f['previous']['wire_bytes'] / 1e6:.2f} MB |")
    for name, fractions in f["converged"].items():
        print(f"converged, {name}: " + ", ".join(f"seed {s} {100 * c:.2f} %" for s, c in zip(CONVERGENCE_SEEDS, fractions)))
    for name, rows in f["readout_errors"].items():
        print(name, ", ".join(f"seed {s}: gain {100 * g:.3f} %, offset {o:.3f} LSB, {b:.1f} s"
                              for s, (g, o, b) in zip(READOUT_SEEDS, rows)))
    spent, least = f["write_verify_bytes"]
    print(f"write-verify: {spent:,} bytes on the wire, at least {least:,} needed ({spent / least:.2f}x)")


if __name__ == "__main__":
    main()
