"""The validate step: a network's dense layers on the chip, judged by what it classifies.

The run holds its own copy of the model and the test data (``model.npz``, ``dataset.npz``,
written before it starts), so what was validated is always next to its results. The step
programs every array the network's tiles use (write-verify, then the stuck cells'
partners re-targeted), calibrates each tile's output scale against its intended weights,
classifies the test samples at once and at each later look (``at_s``, after re-fitting the
output scales when ``maintain``), and stores one ``validation`` row per sample and look
beside what the float model and its chip-precision copy predict for the same sample.

Where the chip's arrays have room, each weight is held by several pairs (``[network]
copies``); a network larger than the chip spills onto further chips of the lab (``[network]
chips``, ``labctl validate --with``), each locked and opened for the step and read through
its own read-out, its arrays numbered after this chip's.
"""

from __future__ import annotations

import io
from contextlib import ExitStack
from typing import Any

import numpy as np

from labctl.errors import UsageError
from labctl.runs.steps import StepContext, _waiter

MODEL_FILE, DATASET_FILE = "model.npz", "dataset.npz"


def load_dataset(data: bytes | str, inputs: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (samples x inputs) and integer labels ``y``; UsageError naming what is wrong."""
    try:
        with np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False) as saved:
            x, y = np.asarray(saved["x"], dtype=float), np.asarray(saved["y"])
    except (OSError, ValueError, KeyError) as err:
        raise UsageError(f"{where}: a dataset is an .npz with x (samples x inputs) and y (labels): {err}") from None
    if x.ndim != 2 or x.shape[1] != inputs:
        raise UsageError(f"{where}: x is {x.shape}, the model takes {inputs} inputs per sample")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise UsageError(f"{where}: y must hold one non-negative integer label per sample")
    if not np.all(np.isfinite(x)):
        raise UsageError(f"{where}: x must be finite")
    return x, y.astype(int)


def run_network(ctx: StepContext) -> dict[str, Any]:
    from labctl_calibration.network import Network

    network = Network.load(io.BytesIO(ctx.run.read_bytes(MODEL_FILE)), f"run {ctx.run.id} {MODEL_FILE}")
    with ExitStack() as stack:
        slots, chips = _slots(ctx, stack, network)
        return _validate(ctx, network, slots, chips)


def _validate(ctx: StepContext, network, slots: list, chips: list[dict[str, Any]]) -> dict[str, Any]:
    from labctl_calibration.chip_network import ChipNetwork, array_targets, plan_tiles
    from labctl_calibration.defects import compensate_through_partners
    from labctl_calibration.network import quantised_matmul, wilson_interval
    from labctl_calibration.write_verify import WriteVerify

    params, board = ctx.protocol.network, ctx.rig.board
    x, y = load_dataset(ctx.run.read_bytes(DATASET_FILE), network.inputs, f"run {ctx.run.id} {DATASET_FILE}")
    if params.samples:
        x, y = x[: params.samples], y[: params.samples]
    geometry = board.geometry()
    try:
        tiles = plan_tiles(network, len(slots), geometry.rows, geometry.cols, params.copies)
    except ValueError as err:
        raise UsageError(f"{', '.join(c['chip'] for c in chips)}: {err}") from None
    targets = array_targets(network, tiles, params, len(slots), geometry.rows, geometry.cols)
    used = sorted({t.array for t in tiles})
    programmed = {}
    for array in used:
        slot = slots[array]
        slot.board.array = slot.array
        ctx.recorder.array = array
        verify = WriteVerify(slot.board, slot.readout, ctx.protocol.write_verify, ctx.recorder)
        result = verify.run(targets[array])
        if result.stuck.any():
            window = tuple(next(c["window_us"] for c in chips if c["chip"] == slot.chip))
            result, _ = compensate_through_partners(verify, result, window)
        programmed[array] = result
        _store_cells(ctx, array, result, targets[array])
    for slot in slots:
        slot.board.array = 0
    ctx.recorder.array = 0
    rigs = [c["rig"] for c in chips]
    programmed_s = [r.board.clock_s() for r in rigs]  # each chip's own clock
    chip = ChipNetwork(board, ctx.readout, network, tiles, targets, params, slots)
    signed = frozenset({0}) if (x < 0).any() else frozenset()  # later layers take ReLU outputs
    chip.calibrate(signed)
    tile_figures = [_tile_figures(tile, chip.calibration[i], slots) for i, tile in enumerate(tiles)]
    float_pred = network.forward(x).argmax(axis=1)
    # the chip's weight precision as this run measured it: levels one programming σ apart, the σ
    # of the mean of a weight's copies (the fewest any tile has)
    sigma = float(np.median([r.error_sigma_us for r in programmed.values()]))
    weight_step_us = sigma / np.sqrt(min(t.copies for t in tiles))
    step = weight_step_us / (params.high_us - params.low_us)
    quantised_pred = network.forward(x, quantised_matmul(network, step, 1 / 2 ** (board.adc().bits - 1))).argmax(axis=1)
    keeper = (_Keeper(ctx, slots, chips, tiles, programmed)
              if params.at_s and params.maintain and ctx.protocol.maintain.refresh else None)
    looks = []
    for k, at in enumerate((0.0, *params.at_s)):
        refreshed = keeper.until(at, rigs, programmed_s) if keeper is not None else None
        _wait_until(rigs, [p + at for p in programmed_s])
        if k and params.maintain:
            chip.calibrate(signed)  # re-compensation: each tile's output scale fitted again
        t_s = board.clock_s() - programmed_s[0]
        predicted = chip.forward(x).argmax(axis=1)
        correct = predicted == y
        n = len(y)
        ctx.run.table("validation").append({
            "look": np.full(n, k, dtype=np.int16), "t_s": np.full(n, t_s), "sample": np.arange(n, dtype=np.int32),
            "label": y.astype(np.int16), "predicted": predicted.astype(np.int16), "correct": correct,
            "float_predicted": float_pred.astype(np.int16), "quantised_predicted": quantised_pred.astype(np.int16),
            "maintained": np.full(n, bool(k and params.maintain))})
        low, high = wilson_interval(int(correct.sum()), n)
        looks.append({"t_s": t_s, "accuracy": float(correct.mean()), "ci95": [low, high],
                      "maintained": bool(k and params.maintain), "refreshed_cells": refreshed,
                      "tiles": [_tile_figures(tile, chip.calibration[i], slots) for i, tile in enumerate(tiles)]
                      if k else None})
        if ctx.recorder.progress:
            ctx.recorder.progress("validate", k + 1, 1 + len(params.at_s))
    for slot in slots:
        slot.board.array = 0  # as every other step expects the board
    float_acc, quant_acc = float((float_pred == y).mean()), float((quantised_pred == y).mean())
    return {"samples": int(len(y)), "layers": len(network.weights), "chip_layers": len({t.layer for t in tiles}),
            "arrays_used": used, "chips": [{k: v for k, v in c.items() if k != "rig"} for c in chips],
            "tiles": tile_figures, "float_accuracy": float_acc,
            "float_ci95": list(wilson_interval(int((float_pred == y).sum()), len(y))),
            "quantised_accuracy": quant_acc, "quantised_weight_step_us": weight_step_us,
            "programming_sigma_us": sigma, "looks": looks,
            "stuck_cells": int(sum(r.stuck.sum() for r in programmed.values())),
            "maintenance": keeper.summary() if keeper is not None else None,
            "chip_accuracy": looks[0]["accuracy"], "chip_vs_float_points": 100 * (looks[0]["accuracy"] - float_acc)}


def _slots(ctx: StepContext, stack: ExitStack, network) -> tuple[list, list[dict[str, Any]]]:
    """The arrays the tiles may use: this chip's, then as many further chips' as the network
    needs (``[network] chips``, ``labctl validate --with``, in order), each locked and opened
    for the step and read through its own read-out: its latest calibration record's, else
    calibrated here with its SMU. A chip the network does not need is not touched."""
    from labctl_calibration.chip_network import chip_slots, plan_tiles

    geometry = ctx.rig.board.geometry()

    def fits(arrays: int) -> bool:
        try:
            plan_tiles(network, arrays, geometry.rows, geometry.cols)
        except ValueError:
            return False
        return True

    slots = chip_slots(ctx.rig.board, ctx.readout, ctx.rig.spec.name)
    chips = [{"chip": ctx.rig.spec.name, "arrays": list(range(len(slots))), "readout": ctx.readout_source,
              "window_us": list(ctx.rig.spec.window_us), "rig": ctx.rig}]
    for name in ctx.protocol.network.chips:
        if fits(len(slots)):
            break
        rig = open_further_chip(name, ctx.rig, stack)
        first = len(slots)
        readout, source = _further_readout(ctx, rig, first)
        slots += chip_slots(rig.board, readout, name)
        chips.append({"chip": name, "arrays": list(range(first, len(slots))), "readout": source,
                      "window_us": list(rig.spec.window_us), "rig": rig})
    return slots, chips


def open_further_chip(name: str, rig, stack: ExitStack):
    """Lock and open another chip of the lab for as long as ``stack`` lasts; its arrays must be
    the size of ``rig``'s, as the tile plan assumes."""
    from labctl.rigs.config import resolve_chip
    from labctl.rigs.lock import chip_lock
    from labctl.rigs.rig import open_rig

    if name == rig.spec.name:
        raise UsageError(f"--with {name}: that is the chip being validated; name other chips")
    spec = resolve_chip(name, config=None if rig.spec.source == "built-in" else rig.spec.source)
    stack.enter_context(chip_lock(spec.name, f"labctl validate with {rig.spec.name}", spec.resources))
    further = stack.enter_context(open_rig(spec))
    mine, theirs = rig.board.geometry(), further.board.geometry()
    if (theirs.rows, theirs.cols) != (mine.rows, mine.cols):
        raise UsageError(f"--with {name}: its arrays are {theirs.rows}x{theirs.cols}, {rig.spec.name}'s "
                         f"{mine.rows}x{mine.cols}: a network is tiled over chips of one array size")
    return further


def _further_readout(ctx: StepContext, rig, first_array: int):
    from labctl_calibration.readout import Readout
    from labctl_calibration.readout_calibration import calibrate_readout

    from labctl.runs.records import latest_record

    adc, params = rig.board.adc(), ctx.protocol.readout
    geometry = rig.board.geometry()
    _, temperature = rig.board.clock_and_temperature()
    record = latest_record(ctx.run.store, rig.spec.name, (geometry.rows, geometry.cols), rig.chip_identity,
                           temperature)
    if record is not None:
        return (Readout(adc.lsb_ua, params.read_voltage, gain=record.readout_gain, offset=record.readout_offset_lsb,
                        calibrated=True), f"record of run {record.run_id}")
    if rig.smu is None:
        return Readout(adc.lsb_ua, params.read_voltage), "nominal (uncalibrated): no SMU and no calibration record"
    ctx.recorder.array = first_array  # its reference reads land under its first array's number
    calibration = calibrate_readout(rig.board, rig.smu, params, ctx.protocol.write_verify, ctx.recorder)
    ctx.recorder.array = 0
    return calibration.readout(adc.lsb_ua, params.read_voltage), f"calibrated in run {ctx.run.id}"


class _Keeper:
    """The maintenance loop (``[maintain]``, as ``labctl maintain`` runs it) on every array the
    tiles use: every ``every_s`` after programming, an averaged read and a refresh of the
    used cells that left their column's drift. A look due at a tick is taken before that
    tick's refresh, so it sees the network as the loop left it a whole interval before."""

    def __init__(self, ctx: StepContext, slots: list, chips: list[dict[str, Any]], tiles, programmed: dict) -> None:
        from labctl_calibration.write_verify import WriteVerify

        self.ctx, self.slots, self.params = ctx, slots, ctx.protocol.maintain
        self.windows = {c["chip"]: tuple(c["window_us"]) for c in chips}
        self.arrays = {}
        rows, cols = programmed[next(iter(programmed))].targets_us.shape
        for array, result in programmed.items():
            used = np.zeros((rows, cols), dtype=bool)
            for t in tiles:
                if t.array == array:
                    used[t.row0:t.row0 + t.height, t.col0:t.col0 + t.width] = True
            usable = used & ~result.stuck & ~result.unreachable
            verify = WriteVerify(slots[array].board, slots[array].readout, ctx.protocol.write_verify, ctx.recorder)
            self.arrays[array] = (result.targets_us, usable, verify, {"stable": usable.copy()}, result.stuck)
        self.tick, self.refreshed, self.nu = 0, 0, []

    def until(self, at_s: float, rigs, programmed_s: list[float]) -> int:
        """The ticks due before ``at_s`` (after programming); the cells they re-programmed."""
        from labctl_calibration.maintain import refresh_tick

        refreshed = 0
        while (self.tick + 1) * self.params.every_s < at_s:
            self.tick += 1
            due = self.tick * self.params.every_s
            _wait_until(rigs, [p + due for p in programmed_s])
            for array, (aims, usable, verify, state, stuck) in self.arrays.items():
                slot = self.slots[array]
                slot.board.array = slot.array
                self.ctx.recorder.array = array
                chip = next(i for i, rig in enumerate(rigs) if rig.board is slot.board)
                t_s = slot.board.clock_s() - programmed_s[chip]
                fresh, nu = refresh_tick(slot.board, slot.readout, verify, aims, usable, self.params, t_s,
                                         self.windows[slot.chip], state, stuck_pairs=stuck)
                refreshed += int(fresh.drifted.sum())
                if nu is not None:
                    self.nu.append(nu)
            self.ctx.recorder.array = 0
        self.refreshed += refreshed
        return refreshed

    def summary(self) -> dict[str, Any]:
        return {"every_s": self.params.every_s, "ticks": self.tick, "refreshed_cells": self.refreshed,
                "refresh_tolerance_us": self.params.refresh_tolerance_us,
                "nu_median": float(np.median(self.nu)) if self.nu else None}


def _wait_until(rigs, due_s: list[float]) -> None:
    """Every chip's clock to its due time. Each chip's remaining time is read after the waits
    before it, so a bench's clock that an earlier sleep already moved is not slept for again;
    a twin's virtual clock moves only when it is advanced."""
    for rig, due in zip(rigs, due_s, strict=True):
        remaining = due - rig.board.clock_s()
        if remaining > 0:
            _waiter(rig)(remaining)


def _tile_figures(tile, calibration, slots) -> dict[str, Any]:
    figures = calibration.accuracy
    return {"layer": tile.layer, "array": tile.array, "chip": slots[tile.array].chip,
            "chip_array": slots[tile.array].array, "rows": tile.rows, "pairs": tile.pairs, "copies": tile.copies,
            "row_copies": tile.row_copies, "col_copies": tile.col_copies, "gain": calibration.gain,
            "signed_l2_mean": None if figures is None else figures.l2_mean,
            "worst_output": None if figures is None else figures.worst_output,
            "noise_floor_l2": None if figures is None else figures.noise_floor_l2}


def _store_cells(ctx: StepContext, array: int, result, intended: np.ndarray) -> None:
    rows, cols = np.indices(intended.shape)
    n = intended.size
    ctx.run.table("cells").append({
        "array": np.full(n, array, dtype=np.int16), "row": rows.ravel().astype(np.int16),
        "col": cols.ravel().astype(np.int16), "target_us": intended.ravel().astype(np.float32),
        "achieved_us": result.achieved_us.ravel().astype(np.float32), "pulses": result.pulses.ravel(),
        "converged": result.converged.ravel(), "stuck": result.stuck.ravel(),
        "aimed_us": result.targets_us.ravel().astype(np.float32)})
