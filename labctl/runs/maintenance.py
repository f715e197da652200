"""The maintain step: the maintenance loop of ``labctl_calibration.maintain``, journalled per look.

Each look's rows go to parts of their own (``part-maintain-t<k>-…``), flushed before the
look enters the journal (``maintain.json``) beside the state the next look needs
(``maintain.npz``: the last read, the cells never refreshed, the output scales), so a
killed run resumes at its next look on the original timeline, nothing measured twice.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from labctl_calibration.write_verify import WriteVerify
from labctl.runs.steps import StepContext, _waiter
from labctl.store import crashpoints

MAINTAIN_JOURNAL = "maintain.json"
MAINTAIN_STATE = "maintain.npz"


def tick_prefix(k: int) -> str:
    return f"maintain-t{k:04d}"


def journalled_ticks(ctx: StepContext) -> Callable[[str], bool]:
    """The parts of the looks the journal holds: kept when the step is resumed."""
    done = {tick_prefix(k) for k in range(len((ctx.run.read_json(MAINTAIN_JOURNAL) or {}).get("ticks", [])))}
    return lambda name: any(name.startswith(f"part-{prefix}-") for prefix in done)


def run_maintenance(ctx: StepContext) -> dict[str, Any]:
    """The maintenance loop (``labctl_calibration.maintain``): a look and a refresh every
    ``every_s``, each tick journalled once its measurements are stored, so a resumed run
    goes on from the next tick on the same timeline."""
    from labctl_calibration.maintain import look, refresh_tick

    params, board = ctx.protocol.maintain, ctx.rig.board
    wv = ctx.write_verify
    aims = wv.targets_us if wv is not None else ctx.targets  # what each cell was programmed to
    usable = ~(wv.stuck | wv.unreachable) if wv is not None else (
        ~ctx.stuck_map if ctx.stuck_map is not None else np.ones(ctx.targets.shape, dtype=bool))
    # signed targets on compensated pairs: a stuck cell's partner keeps the pair's difference on the drift
    stuck_pairs = wv.stuck if (wv is not None and ctx.signed and ctx.protocol.write_verify.compensate_pairs) else None
    wait = _waiter(ctx.rig)
    verify = WriteVerify(board, ctx.readout, ctx.protocol.write_verify, ctx.recorder)
    journal = ctx.run.read_json(MAINTAIN_JOURNAL) or {"programmed_s": board.clock_s(), "ticks": []}
    ctx.run.write_json(MAINTAIN_JOURNAL, journal)
    state: dict[str, np.ndarray] = {"stable": usable.copy()}
    if journal["ticks"]:
        with np.load(io.BytesIO(ctx.run.read_bytes(MAINTAIN_STATE))) as saved:
            state = {name: saved[name] for name in saved.files}
    rng = np.random.default_rng([params.seed, len(journal["ticks"])])
    step_name = ctx.run.step
    try:
        for k in range(len(journal["ticks"]), params.ticks + 1):
            due = journal["programmed_s"] + k * params.every_s
            if board.clock_s() < due:
                wait(due - board.clock_s())
            ctx.run.step = tick_prefix(k)  # this tick's rows in parts of their own: kept on resume once journalled
            started = board.clock_s()
            t_s = started - journal["programmed_s"]
            first = (state["first_slope"], state["first_intercept"]) if "first_slope" in state else None
            previous = (state["slope"], state["intercept"]) if "slope" in state else None
            seen = look(board, ctx.readout, ctx.targets, params, rng, first, previous)
            nu, refreshed = float("nan"), 0
            if params.refresh and k < params.ticks:  # after the last look there is nothing left to keep
                fresh, measured = refresh_tick(board, ctx.readout, verify, aims, usable, params, t_s,
                                               ctx.rig.spec.window_us, state, stuck_pairs)
                nu = measured if measured is not None else float("nan")
                refreshed = int(fresh.drifted.sum())
            board_s = board.clock_s() - started
            ctx.run.table("maintain").append({
                "tick": np.array([k], dtype=np.int32), "t_s": np.array([t_s]), "l2_mean": np.array([seen.l2_mean]),
                "worst_output": np.array([seen.worst_output]), "noise_floor_l2": np.array([seen.noise_floor_l2]),
                "stale_l2_mean": np.array([seen.stale_l2_mean]), "previous_l2_mean": np.array([seen.previous_l2_mean]),
                "nu": np.array([nu]), "refreshed": np.array([refreshed], dtype=np.int32),
                "board_s": np.array([board_s])})
            ctx.run.flush()
            if first is None:
                state.update(first_slope=seen.slope, first_intercept=seen.intercept_ua)
            state.update(slope=seen.slope, intercept=seen.intercept_ua)
            buffer = io.BytesIO()
            np.savez(buffer, **state)
            ctx.run.write_bytes(MAINTAIN_STATE, buffer.getvalue())
            crashpoints.reached(f"maintain-tick-{k}")  # stored, not yet journalled
            journal["ticks"].append({"t_s": t_s, "l2_mean": seen.l2_mean, "worst_output": seen.worst_output,
                                     "noise_floor_l2": seen.noise_floor_l2, "stale_l2_mean": seen.stale_l2_mean,
                                     "previous_l2_mean": seen.previous_l2_mean, "nu": nu if np.isfinite(nu) else None,
                                     "refreshed": refreshed, "board_s": board_s})
            ctx.run.write_json(MAINTAIN_JOURNAL, journal)
            if ctx.recorder.progress:
                ctx.recorder.progress("maintain", k + 1, params.ticks + 1)
    finally:
        ctx.run.step = step_name
    ticks = journal["ticks"]
    later = ticks[1:] or ticks
    return {"every_s": params.every_s, "until_s": params.until_s, "refresh": params.refresh, "ticks": ticks,
            "l2_start": ticks[0]["l2_mean"], "l2_max": max(t["l2_mean"] for t in later),
            "l2_end": ticks[-1]["l2_mean"], "stale_l2_end": ticks[-1]["stale_l2_mean"],
            "noise_floor_l2_end": ticks[-1]["noise_floor_l2"],
            "refreshed_cells": sum(t["refreshed"] for t in ticks), "board_s": sum(t["board_s"] for t in ticks)}
