"""The steps of a calibration run, each journalled in the run's manifest as it completes.

Every step reads what earlier steps left in the context (the read-out model above
all), writes its measurements to the run store, and leaves its figures for the
summary. A step that cannot run on this rig (read-out calibration without an SMU)
says so in its figures instead of failing the run.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl_calibration.drift import DriftFit, Segment, compensation, fit_drift, run_segments, settle
from labctl_calibration.health import HealthResult, check_health
from labctl_calibration.mvm import MvmResult, check_mvm
from labctl_calibration.read_noise import ReadNoiseResult, measure_read_noise
from labctl_calibration.readout import Readout
from labctl_calibration.readout_calibration import ReadoutCalibration, calibrate_readout
from labctl_calibration.write_verify import WriteVerify, WriteVerifyResult
from labctl.errors import InstrumentFailure
from labctl.runs.protocol import CalibrateProtocol
from labctl.runs.recorder import StoreRecorder
from labctl.runs.records import CalibrationRecord
from labctl.rigs.rig import Rig
from labctl.store import crashpoints
from labctl.store.run import Run


@dataclass
class StepContext:
    run: Run
    rig: Rig
    protocol: CalibrateProtocol
    targets: np.ndarray
    recorder: StoreRecorder
    readout: Readout
    record: CalibrationRecord | None  # a previous calibration of this chip, to start from
    temperature_k: float
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    health: HealthResult | None = None
    readout_calibration: ReadoutCalibration | None = None
    noise: ReadNoiseResult | None = None
    write_verify: WriteVerifyResult | None = None
    mvm: MvmResult | None = None
    drift: DriftFit | None = None
    readout_source: str = "nominal (uncalibrated)"
    stuck_map: np.ndarray | None = None  # write-verify's, else the health check's
    mvm_slope: np.ndarray | None = None
    mvm_intercept_ua: np.ndarray | None = None
    signed: bool = False  # the targets carry signed weights on differential column pairs (--weights)


STATE_ARRAYS = "state.npz"
STATE_JSON = "state.json"
DRIFT_JOURNAL = "drift.json"
WV_ARRAYS = ("targets_us", "achieved_us", "pulses", "converged", "stuck", "unreachable", "included")


def run_steps(ctx: StepContext) -> None:
    """Run the protocol's steps that are not done yet; after each, checkpoint what later steps need."""
    done = ctx.run.manifest.get("steps_done", [])
    if ctx.run.read_json(STATE_JSON) is None:
        checkpoint(ctx)  # the targets and the start, before anything can be interrupted
    for step in ctx.protocol.steps:
        if step in done:
            ctx.figures[step] = ctx.run.manifest["steps"][step]
            continue
        keep = _journalled_parts(ctx, step)
        ctx.run.begin_step(step, keep)
        ctx.recorder.step = step
        before = _board_cost(ctx)
        ctx.figures[step] = STEPS[step](ctx)
        ctx.figures[step]["cost"] = _cost_since(ctx, before)
        checkpoint(ctx)
        ctx.run.step_done(step, **ctx.figures[step])


def _board_cost(ctx: StepContext) -> tuple[float, int, int]:
    board = ctx.rig.board
    return board.clock_s(), board.link.bytes_sent, board.link.bytes_received


def _cost_since(ctx: StepContext, before: tuple[float, int, int]) -> dict[str, Any]:
    """What a step cost on the board: its clock, and the bytes both ways with the time they
    need at the link's rate. That time is a floor under the board time no firmware can beat;
    the rest is pulses, conversions, settling and waits. A resumed step counts from where it
    resumed."""
    clock, sent, received = _board_cost(ctx)
    wire = (sent - before[1]) + (received - before[2])
    rate = ctx.rig.spec.config.link_bytes_per_s
    return {"board_s": clock - before[0], "wire_bytes": wire, "wire_s_at_link": wire / rate,
            "link_bytes_per_s": rate}


def _journalled_parts(ctx: StepContext, step: str) -> Callable[[str], bool]:
    """The parts a resumed step continues from instead of measuring again: drift's reads,
    the maintenance loop's completed ticks."""
    if step == "drift":
        return lambda name: name.startswith("part-drift-read-")
    if step == "maintain":
        from labctl.runs.maintenance import journalled_ticks

        return journalled_ticks(ctx)
    return lambda name: False


def checkpoint(ctx: StepContext) -> None:
    """What a resumed run needs from the steps done so far (the manifest says which those are)."""
    arrays = {"targets": ctx.targets, "readout_gain": np.asarray(ctx.readout.gain, dtype=float),
              "readout_offset": np.asarray(ctx.readout.offset, dtype=float)}
    for name in ("stuck_map", "mvm_slope", "mvm_intercept_ua"):
        if getattr(ctx, name) is not None:
            arrays[name] = getattr(ctx, name)
    if ctx.write_verify is not None:  # refine and the mvm step's defect figures start from it
        wv = ctx.write_verify
        arrays.update({f"wv_{name}": getattr(wv, name) for name in WV_ARRAYS},
                      wv_scalars=np.array([wv.iterations, wv.tolerance_us]))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    ctx.run.write_bytes(STATE_ARRAYS, buffer.getvalue())
    ctx.run.write_json(STATE_JSON, {"readout_calibrated": ctx.readout.calibrated,
                                    "readout_source": ctx.readout_source, "lsb_ua": ctx.readout.lsb_ua,
                                    "read_voltage": ctx.readout.read_voltage, "temperature_k": ctx.temperature_k,
                                    "t0_s": ctx.recorder.t0_s, "signed": ctx.signed})


def restore_context(run: Run, rig: Rig, protocol: CalibrateProtocol, progress) -> StepContext:
    """The context of an interrupted run, from its last checkpoint."""
    state = run.read_json(STATE_JSON)
    if state is None:
        raise InstrumentFailure(f"run {run.id} stopped before it started measuring: start a new run instead")
    with np.load(io.BytesIO(run.read_bytes(STATE_ARRAYS))) as saved:
        arrays = {name: saved[name] for name in saved.files}
    targets = np.asarray(arrays["targets"], dtype=float)
    if targets.shape != (rig.spec.rows, rig.spec.cols):
        raise InstrumentFailure(f"{rig.spec.name}: the board reports {rig.spec.rows}x{rig.spec.cols}, "
                                f"run {run.id} was {targets.shape[0]}x{targets.shape[1]}")
    gain, offset = arrays.get("readout_gain", 1.0), arrays.get("readout_offset", 0.0)
    readout = Readout(state["lsb_ua"], state["read_voltage"], gain=gain, offset=offset,
                      calibrated=state["readout_calibrated"])
    recorder = StoreRecorder(run, array=0, t0_s=state["t0_s"], cols=targets.shape[1], progress=progress)
    ctx = StepContext(run, rig, protocol, targets, recorder, readout, None, state["temperature_k"])
    ctx.readout_source = state["readout_source"]
    ctx.signed = bool(state.get("signed", False))
    for name in ("stuck_map", "mvm_slope", "mvm_intercept_ua"):
        if name in arrays:
            setattr(ctx, name, arrays[name])
    if "wv_scalars" in arrays:
        iterations, tolerance = arrays["wv_scalars"]
        ctx.write_verify = WriteVerifyResult(**{name: arrays[f"wv_{name}"] for name in WV_ARRAYS},
                                             iterations=int(iterations), tolerance_us=float(tolerance))
    return ctx


def _settle(ctx: StepContext) -> dict[str, Any]:
    """Bring the chip to the temperature it is measured at before anything is programmed
    (a drift run: its first temperature). An earlier run may have left it hot, and a
    chip programmed at 330 K and then read at 300 K is not the reference it claims to be."""
    params, controller = ctx.protocol.drift, ctx.rig.temperature
    kelvin = params.temperatures_k[0]
    if controller is None:  # nothing to set: the drift step refuses temperatures away from the chip's own
        return {"temperature_k": kelvin, "measured_k": ctx.temperature_k, "controller": False}
    trace = settle(ctx.rig.board, kelvin, lambda k: _set_point(controller, k, params.heater_range),
                   lambda: controller.temperature_k, _waiter(ctx.rig), params, "settling before programming",
                   "nothing was programmed")
    _, ctx.temperature_k = ctx.rig.board.clock_and_temperature()
    return {"temperature_k": kelvin, "measured_k": trace[-1][1], "settle_s": trace[-1][0] - trace[0][0],
            "controller": True}


def _health(ctx: StepContext) -> dict[str, Any]:
    result = check_health(ctx.rig.board, ctx.readout, ctx.protocol.health, ctx.recorder)
    ctx.health = result
    if ctx.stuck_map is None:
        ctx.stuck_map = result.dead
    identities = {name: inst.identify() for name, inst in ctx.rig.instruments().items()}
    figures = {"dead_cells": int(result.dead.sum()), "dead_fraction": result.dead_fraction,
               "board_temperature_k": result.temperature_k, "instruments": identities}
    if ctx.rig.temperature is not None:
        figures["controller_temperature_k"] = ctx.rig.temperature.temperature_k
    return figures


def _readout(ctx: StepContext) -> dict[str, Any]:
    adc = ctx.rig.board.adc()
    params = ctx.protocol.readout
    if "AMMETER" in ctx.rig.board.capabilities():  # its reads are currents it measured itself
        ctx.readout = Readout(adc.lsb_ua, params.read_voltage, calibrated=True)
        ctx.readout_source = "board's own current measurement (AMMETER: nothing to calibrate)"
        return {"source": ctx.readout_source}
    if ctx.record is not None:
        ctx.readout = Readout(adc.lsb_ua, params.read_voltage, gain=ctx.record.readout_gain,
                              offset=ctx.record.readout_offset_lsb, calibrated=True)
        ctx.readout_source = f"record of run {ctx.record.run_id}"
        _store_readout(ctx, ctx.record.readout_gain, ctx.record.readout_offset_lsb, None, ctx.record.run_id)
        return {"source": ctx.readout_source}
    if ctx.rig.smu is None:
        return {"source": ctx.readout_source, "skipped": "no SMU on this rig and no earlier calibration record"}
    if ctx.rig.spec.rows < 2 or len(set(params.levels_us)) < 2:
        return {"source": ctx.readout_source, "skipped": "a gain and offset need two reference rows at two levels"}
    calibration = calibrate_readout(ctx.rig.board, ctx.rig.smu, params, ctx.protocol.write_verify, ctx.recorder)
    ctx.readout_calibration = calibration
    ctx.readout = calibration.readout(adc.lsb_ua, params.read_voltage)
    ctx.readout_source = f"calibrated in run {ctx.run.id}"
    _store_readout(ctx, calibration.gain, calibration.offset_lsb, calibration.residual_rms_lsb, ctx.run.id)
    return {
        "source": ctx.readout_source,
        "reference_levels": len(calibration.reference_rows),  # reference cells per column (one row each)
        "levels_us": sorted({float(v) for v in np.round(np.median(calibration.reference_us, axis=1), 1)}),
        "split_half_shares": None if calibration.split_half_shares is None else list(calibration.split_half_shares),
        "gain_min": float(calibration.gain.min()), "gain_max": float(calibration.gain.max()),
        "offset_min_lsb": float(calibration.offset_lsb.min()), "offset_max_lsb": float(calibration.offset_lsb.max()),
        "residual_rms_lsb": float(calibration.residual_rms_lsb.mean()),
        "gain_uncertainty_max": _finite_max(calibration.gain_uncertainty),
        "offset_uncertainty_max_lsb": _finite_max(calibration.offset_uncertainty_lsb),
        "noise_floor_lsb": calibration.noise_floor_lsb,
        # quantisation (about 0.3 LSB RMS) is the least two honest looks can disagree by
        "residual_vs_floor": float(calibration.residual_rms_lsb.mean()) / max(calibration.noise_floor_lsb, 0.5),
    }


def _finite_max(values: np.ndarray) -> float | None:
    """The largest finite value (None with none: a fit through two points has no standard error)."""
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else None


def _store_readout(ctx: StepContext, gain: np.ndarray, offset: np.ndarray, residual: np.ndarray | None,
                   source: str) -> None:
    n = len(gain)
    ctx.run.table("readout").append({
        "array": np.zeros(n, dtype=np.int16), "col": np.arange(n, dtype=np.int16),
        "gain": gain.astype(np.float64), "offset_lsb": offset.astype(np.float64),
        "residual_rms_lsb": (np.full(n, np.nan) if residual is None else residual).astype(np.float32),
        "source_run": [source] * n,
    })


def _read_noise(ctx: StepContext) -> dict[str, Any]:
    result = measure_read_noise(ctx.rig.board, ctx.readout, ctx.protocol.read_noise, ctx.recorder)
    ctx.noise = result
    columns = result.column_sigma_us
    return {"reads": ctx.protocol.read_noise.reads, "averaging": result.averaging,
            "median_sigma_us": float(np.median(result.sigma_us)),
            "column_sigma_us_min": float(columns.min()), "column_sigma_us_max": float(columns.max()),
            "versus_conductance": result.versus_conductance()}


def _write_verify(ctx: StepContext) -> dict[str, Any]:
    known = ctx.record.stuck if ctx.record is not None else None
    verify = WriteVerify(ctx.rig.board, ctx.readout, ctx.protocol.write_verify, ctx.recorder)
    result = verify.run(ctx.targets, known_stuck=known)
    pairs: dict[str, Any] = {}
    if ctx.signed and ctx.protocol.write_verify.compensate_pairs and result.stuck.any():
        result, pairs = _compensate_through_partners(ctx, verify, result)
    ctx.write_verify = result
    ctx.stuck_map = result.stuck
    _store_cells(ctx.run, result, ctx.targets)
    return {**pairs, "cells": result.cells, "converged_cells": int(result.converged.sum()),
            "tolerance_us": result.tolerance_us, "error_max_us": result.max_abs_error_us,
            "pulses_per_cell_max": int(result.pulses.max(initial=0)),
            "iterations": result.iterations, "converged_fraction": result.converged_fraction,
            "stuck_cells": int(result.stuck.sum()), "unreachable_cells": int(result.unreachable.sum()),
            "error_sigma_us": result.error_sigma_us, "pulses_per_cell_mean": float(result.pulses.mean()),
            "readout": ctx.readout_source,
            "known_stuck_from_record": int(known.sum()) if known is not None else 0}


def _compensate_through_partners(ctx: StepContext, verify: WriteVerify, result: WriteVerifyResult
                                 ) -> tuple[WriteVerifyResult, dict[str, Any]]:
    """Signed weights: re-target and program the partners of the stuck cells so each pair
    still computes its weight; the cells table then holds what each cell was programmed to."""
    from labctl_calibration.defects import compensate_through_partners

    merged, plan = compensate_through_partners(verify, result, ctx.rig.spec.window_us)
    stuck = int(result.stuck.sum())
    left = plan.uncompensated & result.stuck
    return merged, {"pairs_stuck_cells": stuck, "pairs_compensated": int((plan.compensated & result.stuck).sum()),
                    "pairs_uncompensated": int(left.sum()),
                    "pairs_residual_max_us": float(np.nanmax(plan.residual_us[left])) if left.any() else 0.0}


def _store_cells(run: Run, result: WriteVerifyResult, intended_us: np.ndarray) -> None:
    rows, cols = np.indices(result.targets_us.shape)
    n = result.targets_us.size
    run.table("cells").append({
        "array": np.zeros(n, dtype=np.int16),
        "row": rows.ravel().astype(np.int16),
        "col": cols.ravel().astype(np.int16),
        "target_us": intended_us.ravel().astype(np.float32),
        "achieved_us": result.achieved_us.ravel().astype(np.float32),
        "pulses": result.pulses.ravel(),
        "converged": result.converged.ravel(),
        "stuck": result.stuck.ravel(),
        "aimed_us": result.targets_us.ravel().astype(np.float32),
    })


def _refine(ctx: StepContext) -> dict[str, Any]:
    """MVM-level refinement of what write-verify left (``labctl_calibration.refine``)."""
    from labctl_calibration.refine import refine

    first = ctx.write_verify
    if first is None:
        return {"skipped": "refine needs write_verify's result: add write_verify before it in the protocol's steps"}
    verify = WriteVerify(ctx.rig.board, ctx.readout, ctx.protocol.write_verify, ctx.recorder)
    result = refine(ctx.rig.board, ctx.readout, verify, first.targets_us, first, ctx.protocol.refine,
                    ctx.rig.spec.window_us, _waiter(ctx.rig))
    ctx.write_verify = result.write_verify
    ctx.stuck_map = result.write_verify.stuck
    rows, cols = np.indices(ctx.targets.shape)
    for k, (estimate, picked) in enumerate(zip(result.estimates, result.picked, strict=True)):
        n = picked.size
        ctx.run.table("refine").append({
            "round": np.full(n, k, dtype=np.int16), "array": np.zeros(n, dtype=np.int16),
            "row": rows.ravel().astype(np.int16), "col": cols.ravel().astype(np.int16),
            "estimate_us": estimate.error_us.ravel().astype(np.float32),
            "estimate_sigma_us": estimate.sigma_us.ravel().astype(np.float32), "picked": picked.ravel(),
            "achieved_us": result.write_verify.achieved_us.ravel().astype(np.float32)
            if k == len(result.estimates) - 1 else np.full(n, np.nan, dtype=np.float32),
        })
    final = result.write_verify
    return {"rounds": [vars(r) for r in result.rounds],
            "picked_cells": int(sum(r.picked for r in result.rounds)),
            "board_s": float(sum(r.board_s for r in result.rounds)),
            "converged_fraction": final.converged_fraction, "error_sigma_us": final.error_sigma_us,
            "stuck_cells": int(final.stuck.sum())}


def _mvm(ctx: StepContext) -> dict[str, Any]:
    defects = None
    wv = ctx.write_verify
    if wv is not None and not ctx.signed:  # signed pairs have compensated theirs, and report what is left
        bad = wv.stuck | wv.unreachable
        defects = np.where(bad, wv.achieved_us - ctx.targets, 0.0)
    result = check_mvm(ctx.rig.board, ctx.readout, ctx.protocol.mvm, intended_us=ctx.targets, defect_error_us=defects,
                       wait=_waiter(ctx.rig))
    ctx.mvm = result
    ctx.mvm_slope, ctx.mvm_intercept_ua = result.slope, result.intercept_ua
    vectors, cols = result.expected_ua.shape
    ctx.run.table("mvm").append({
        "input_id": np.repeat(np.arange(vectors, dtype=np.int32), cols),
        "col": np.tile(np.arange(cols, dtype=np.int16), vectors),
        "expected_ua": result.expected_ua.ravel(),  # what the conductances read predict: self-consistency
        "measured_ua": result.measured_ua.ravel(),
        "corrected_ua": result.corrected_ua.ravel(), "held_out": np.repeat(result.test, cols),
        "intended_ua": result.intended_ua.ravel(),  # what the targets compute: the user's reference
    })
    figures = {"vectors": vectors, "full_scale_ua": result.full_scale_ua, "mvm_gain": result.gain,
               "clipped_outputs": result.clipped,
               "raw_rms_fs": result.raw["rms_fs"], "raw_worst_fs": result.raw["worst_fs"],
               "corrected_rms_fs": result.corrected["rms_fs"], "corrected_worst_fs": result.corrected["worst_fs"]}
    if result.deployed is not None:
        figures.update(result.deployed.figures(), deployed_as="signed weights on column pairs" if ctx.signed
                       else "conductance targets")
    return figures


def _maintain(ctx: StepContext) -> dict[str, Any]:
    from labctl.runs.maintenance import run_maintenance  # it builds on this module

    return run_maintenance(ctx)


def _solve(ctx: StepContext) -> dict[str, Any]:
    from labctl.runs.solving import run_solve  # it builds on this module

    return run_solve(ctx)


def _network(ctx: StepContext) -> dict[str, Any]:
    from labctl.runs.validation import run_network  # it builds on this module

    return run_network(ctx)


def _drift(ctx: StepContext) -> dict[str, Any]:
    params = ctx.protocol.drift
    board, rig = ctx.rig.board, ctx.rig
    shape = ctx.targets.shape
    controller = rig.temperature
    needs_controller = len(params.temperatures_k) > 1 or abs(params.temperatures_k[0] - ctx.temperature_k) > 2.0
    if needs_controller and controller is None:
        raise InstrumentFailure(f"{rig.spec.name}: drift at {list(params.temperatures_k)} K needs a temperature "
                                "controller, and this rig has none")
    wait = _waiter(rig)
    usable = ~ctx.stuck_map if ctx.stuck_map is not None else np.ones(shape, dtype=bool)
    reference_rows = np.unique(np.linspace(0, shape[0] - 1, min(params.reference_rows, shape[0])).round().astype(int))
    journal = ctx.run.read_json(DRIFT_JOURNAL) or {"programmed_s": board.clock_s(), "segments": []}
    ctx.run.write_json(DRIFT_JOURNAL, journal)  # the timeline is anchored before the first read
    total = params.reads * len(params.temperatures_k)

    def save_journal() -> None:
        ctx.run.write_json(DRIFT_JOURNAL, journal)

    def part_name(k: int, i: int) -> str:
        return f"drift-read-k{k:02d}-r{i:04d}"

    def recorded(k: int, i: int):
        path = f"{ctx.run.partition('reads')}/part-{part_name(k, i)}.parquet"
        if not ctx.run.fs.exists(path):
            return None
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["t_s", "g_us"], filesystem=ctx.run.fs.fs)
        g = table.column("g_us").to_numpy().reshape(shape)
        return ctx.recorder.t0_s + float(table.column("t_s")[0].as_py()), g

    def on_read(k: int, i: int, codes: np.ndarray, g: np.ndarray, time_s: float) -> None:
        _, kelvin = board.clock_and_temperature()
        phase = f"drift-{params.temperatures_k[k]:g}K"
        columns = ctx.recorder.read_columns(phase, i, np.arange(shape[0]), codes, g, time_s, kelvin)
        ctx.run.table("reads").write_part(part_name(k, i), columns)
        crashpoints.reached(f"drift-read-{k}-{i}")  # the crash suite's kill: stored, not yet journalled
        if ctx.recorder.progress:
            ctx.recorder.progress("drift", k * params.reads + i + 1, total)

    def after_segment(k: int, segment: Segment) -> None:
        if k == 0 and "compensation" not in journal:  # at the end of the reference temperature
            comp = compensation(board, ctx.readout, segment.conductance_us[0].astype(float),
                                segment.conductance_us[-1].astype(float), reference_rows, usable, params)
            journal["compensation"] = {"global_factor": comp.global_factor, "raw": comp.raw,
                                       "global": comp.global_compensated, "column": comp.column_compensated}
            save_journal()

    segments = run_segments(
        board, ctx.readout, params, wait,
        (lambda kelvin: _set_point(controller, kelvin, params.heater_range)) if controller is not None else None,
        (lambda: controller.temperature_k) if controller is not None else None,
        journal, save_journal, recorded, on_read, after_segment,
    )
    programmed_s = journal["programmed_s"]
    fit = fit_drift(segments, programmed_s, params, np.random.default_rng(params.seed), usable)
    ctx.drift = fit
    comp = journal["compensation"]
    rows, cols = np.indices(shape)
    ctx.run.table("drift").append({
        "array": np.zeros(fit.nu.size, dtype=np.int16), "row": rows.ravel().astype(np.int16),
        "col": cols.ravel().astype(np.int16), "nu": fit.nu.ravel().astype(np.float32),
        "g0_us": fit.g0_us.ravel().astype(np.float32), "r2": fit.r2.ravel().astype(np.float32),
        "nu_se": fit.nu_se.ravel().astype(np.float32),
        "temperature_k": np.full(fit.nu.size, params.temperatures_k[0], dtype=np.float32),
    })
    # ν over every working cell: keeping the fits with a high R² would keep, at low conductance
    # where read noise leaves most fits poor, the cells that happen to drift fastest
    fitted = usable & np.isfinite(fit.nu)
    return {
        "temperatures_k": list(params.temperatures_k), "duration_s": params.duration_s, "reads": params.reads,
        "nu_median": _percentile(fit.nu[fitted], 50), "nu_p10": _percentile(fit.nu[fitted], 10),
        "nu_p90": _percentile(fit.nu[fitted], 90), "r2_median": _percentile(fit.r2[usable], 50),
        "well_fitted_cells": int((usable & (fit.r2 > 0.5)).sum()),
        "nu_by_target_us": _nu_by_target(ctx.targets, fit.nu, fitted),
        "accelerations": fit.accelerations, "activation_ev": fit.activation_ev,
        "compensation_global_factor": comp["global_factor"],
        "mvm_raw_worst_fs": comp["raw"]["worst_fs"], "mvm_global_worst_fs": comp["global"]["worst_fs"],
        "mvm_column_worst_fs": comp["column"]["worst_fs"],
    }


def _set_point(controller, kelvin: float, heater_range: int) -> None:
    """The heater range first: an earlier run may have left the heater off (range 0),
    and then no set point above ambient is ever reached."""
    controller.heater_range = heater_range
    controller.set_point_k = kelvin


def _percentile(values: np.ndarray, q: float) -> float | None:
    """None when no cell qualifies (every fit poor, say): a figure of nothing is not zero."""
    return float(np.percentile(values, q)) if values.size else None


def _nu_by_target(targets: np.ndarray, nu: np.ndarray, fitted: np.ndarray) -> list[dict[str, float]]:
    """Median ν per target level: the state dependence of drift (empty for free-form targets)."""
    rounded = np.round(targets, 3)
    levels = np.unique(rounded)
    if len(levels) > 16:
        return []
    return [{"target_us": float(level), "nu_median": float(np.median(nu[fitted & (rounded == level)]))}
            for level in levels if (fitted & (rounded == level)).any()]


def _waiter(rig: Rig) -> Callable[[float], None]:
    """Time passes on the board's clock: a twin's virtual one, a real bench's wall."""
    return rig.board.let_time_pass


STEPS: dict[str, Callable[[StepContext], dict[str, Any]]] = {
    "settle": _settle, "health": _health, "readout": _readout, "read_noise": _read_noise,
    "write_verify": _write_verify, "refine": _refine, "mvm": _mvm, "maintain": _maintain,
    "network": lambda ctx: _network(ctx), "solve": lambda ctx: _solve(ctx), "drift": _drift,
}
