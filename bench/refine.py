"""Write-verify alone, a second write-verify pass, or MVM-level refinement: which deploys better?

Each arm programs the same chip (the same preset and seed: the same cells) to the same
uniform random targets, then:

* ``write-verify``: nothing more;
* ``+ second pass``: write-verify again over every cell (per-cell program-and-verify, given
  the board time refinement takes);
* ``+ settled passes``: the refine step's rounds, waits and band, but every cell judged by
  its own read (what waiting alone buys);
* ``+ refine``: the protocol's refine step (cells picked by their MVM-estimated error).

Every arm is judged the same time after its last pulse (``--settle``, board time: RRAM
relaxes for tens of seconds), by the deployed matrix's figures against the targets
(held-out inputs, beside the noise floor of the same measurement), and by the cells' true
error from the twin's ground truth (a benchmark may read it; calibration never does).

    python bench/refine.py [--presets pcm,rram] [--sizes 64,256] [--seeds 0,1,2] [--settle 60]
"""

from __future__ import annotations

import argparse

import numpy as np

TOP_US = {"pcm": 20.0, "rram": 32.0, "sram-64": 20.0}
PROTOCOL = {"pcm": "calibrate", "rram": "calibrate-rram", "sram-64": "calibrate"}


def arm(name: str, preset: str, size: int, seed: int, settle_s: float) -> dict:
    from labctl_calibration.mvm import MvmParams, check_mvm
    from labctl_calibration.readout import Readout
    from labctl_calibration.refine import refine
    from labctl_calibration.write_verify import WriteVerify
    from labctl_drivers import Board, InProcessTransport
    from labctl_sims.server import TwinRig

    from labctl.runs.protocol import load_protocol

    protocol = load_protocol(PROTOCOL[preset]).protocol
    rig = TwinRig.build(preset, seed=seed, rows=size, cols=size)
    board = Board(InProcessTransport(rig.board.feed))
    readout = Readout(board.adc().lsb_ua, protocol.write_verify.read_voltage)
    targets = np.random.default_rng(100 + seed).uniform(2.0, TOP_US[preset], (size, size))
    advance = lambda seconds: board.write_checked(f"SIM:CLOCK:ADV {float(seconds)!r}")
    verify = WriteVerify(board, readout, protocol.write_verify.model_copy(update={"batch": "auto"}))
    start = board.clock_s()
    result = verify.run(targets)
    extra = {}
    if name == "+ second pass":
        again = verify.run(targets, known_stuck=result.stuck)
        result = result.merged(again, ~(result.stuck | result.unreachable))
    elif name == "+ settled passes":  # refine's waits and band, with reads in place of the MVM estimate
        settled = WriteVerify(board, readout, verify.p.model_copy(update={
            "band_us": protocol.refine.band_us or verify.p.band_us,
            "tolerance_us": max(protocol.refine.band_us or 0.0, verify.p.tolerance_us)}))
        usable = ~(result.stuck | result.unreachable)
        for _ in range(protocol.refine.rounds):
            advance(protocol.refine.settle_s)
            result = result.merged(settled.run(targets, include=usable, known_stuck=result.stuck), usable)
    elif name == "+ refine":
        refined = refine(board, readout, verify, targets, result, protocol.refine, (0.0, TOP_US[preset] + 5), advance)
        result = refined.write_verify
        extra = {"picked": sum(r.picked for r in refined.rounds)}
    board_s = board.clock_s() - start
    advance(settle_s)
    truth = rig.chip.ground_truth().conductance_us[0]
    usable = ~(result.stuck | result.unreachable)
    factor = float((truth * targets)[usable].sum() / (truth * truth)[usable].sum())  # drift: one global factor
    error = (factor * truth - targets)[usable]
    bad = ~usable
    mvm = check_mvm(board, readout, MvmParams(vectors=64, seed=7), intended_us=targets,
                    defect_error_us=np.where(bad, result.achieved_us - targets, 0.0)).deployed
    return {"arm": name, "board_s": board_s, "true_rms_us": float(np.sqrt(np.mean(error**2))),
            "l2": mvm.l2_mean, "clean": mvm.without_defects_l2_mean, "floor": mvm.noise_floor_l2, **extra}


ARMS = ("write-verify", "+ second pass", "+ settled passes", "+ refine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="pcm,rram")
    parser.add_argument("--sizes", default="64,256")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--settle", type=float, default=60.0, help="board seconds from the last pulse to judging")
    args = parser.parse_args()
    print(f"judged {args.settle:g} s of board time after each arm's last pulse; true error from the twin's "
          "ground truth, after one global factor (drift)")
    for preset in args.presets.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                for name in ARMS:
                    r = arm(name, preset, size, seed, args.settle)
                    print(f"{preset:<7} {size:>4}x{size:<4} seed {seed}  {name:<16} board {r['board_s']:6.1f} s  "
                          f"true error {r['true_rms_us']:.3f} µS RMS  deployed L2 {100 * r['l2']:5.1f} % "
                          f"(without defects {100 * r['clean']:5.1f} %, floor {100 * r['floor']:4.1f} %)"
                          + (f"  {r['picked']} cells re-verified" if "picked" in r else ""), flush=True)


if __name__ == "__main__":
    main()
