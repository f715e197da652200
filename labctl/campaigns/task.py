"""What a worker runs for one campaign task: start the run, resume it, or take the finished one.

A task is never run blindly twice. Its run is labelled with the campaign, this submission
of it and the task, so
when Dask hands the task out again (its worker died mid-run and the chip's host is back),
the store says where it got to: a completed run is taken as it is, a run whose process
died (still marked running) is resumed from its journal, exactly as ``labctl resume RUN``
does, and only a task with no run at all starts one. A run that failed for a reason (an
instrument fault, a set point not reached) is reported, not retried: a person decides.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from labctl.campaigns.spec import Task
from labctl.errors import LabctlError

PROGRESS_TOPIC = "labctl-progress"


def find_run(task: Task, data: str | None) -> tuple[str, dict[str, Any]] | None:
    """The newest run of this chip labelled with this campaign and task."""
    from labctl.store.root import data_root
    from labctl.store.run import RunStore

    store = RunStore(data_root(data))
    for run_id, manifest in store.runs_newest_first(task.chip):
        if manifest.get("labels", {}) == labels(task):
            return run_id, manifest
    return None


def labels(task: Task) -> dict[str, str]:
    """What a task's run carries in its manifest: the campaign, this submission of it, the task."""
    return {"campaign": task.campaign, "submission": task.submission, "task": task.id}


def run_task(task: Task, data: str | None, config: str | None, *upstream: dict[str, Any]) -> dict[str, Any]:
    """Carry out ``task`` on this host's rig; always a result (never an exception for a run
    that failed, so the tasks after it are skipped with the reason instead of erring)."""
    result: dict[str, Any] = {"task": task.id, "chip": task.chip, "stage": task.stage.name,
                              "submission": task.submission, "host": socket.gethostname(), "run_id": None,
                              "passed": None, "error": None}
    blocked = [up for up in upstream if up.get("status") != "completed"]
    if blocked:
        return {**result, "status": "skipped", "action": "skipped",
                "error": f"{blocked[0]['task']} did not complete ({blocked[0].get('status')})"}
    started = time.perf_counter()
    try:
        found = find_run(task, data)
        if found is not None and found[1].get("status") == "completed":
            run_id, manifest = found
            return {**result, "status": "completed", "action": "already done", "run_id": run_id,
                    "passed": manifest.get("passed"), "summary": _figures(manifest.get("summary", {}))}
        if found is not None and found[1].get("status") != "running":
            run_id, manifest = found
            return {**result, "status": manifest.get("status", "failed"), "action": "not retried", "run_id": run_id,
                    "error": manifest.get("error") or "the run ended without completing"}
        outcome, action = _carry_out(task, data, config, found[0] if found else None)
    except LabctlError as err:
        return {**result, "status": "failed", "action": "failed", "error": str(err),
                "run_id": (find_run(task, data) or (None,))[0]}
    return {**result, "status": "completed", "action": action, "run_id": outcome.run_id, "passed": outcome.passed,
            "summary": _figures(outcome.summary()), "wall_s": round(time.perf_counter() - started, 2)}


def _carry_out(task: Task, data: str | None, config: str | None, unfinished: str | None):
    from labctl import api

    progress = _progress_reporter(task)
    if unfinished is not None:
        return api.resume(unfinished, data=data, config=config, progress=progress), "resumed"
    stage = task.stage
    outcome = api.calibrate(task.chip, protocol=task.protocol_path, data=data, config=config, fresh=stage.fresh,
                            drift=stage.drift, maintain=stage.maintain, labels=labels(task), progress=progress)
    return outcome, "started"


def _figures(summary: dict[str, Any]) -> dict[str, Any]:
    """The few figures a campaign's table shows per task."""
    keep = ("converged_fraction", "error_sigma_us", "stuck_cells", "passed")
    figures = {key: summary[key] for key in keep if key in summary}
    drift = summary.get("steps", {}).get("drift", {})
    if "nu_median" in drift:
        figures["nu_median"] = drift["nu_median"]
    return figures


def _progress_reporter(task: Task):
    """Progress of the run, as Dask events the campaign's client shows (each quarter of a step);
    nothing outside a Dask worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    last: dict[str, int] = {}

    def report(step: str, done: int, total: int) -> None:
        quarter = int(4 * done / total) if total else 4
        if last.get(step) != quarter:
            last[step] = quarter
            worker.log_event(PROGRESS_TOPIC, {"task": task.id, "step": step, "done": done, "total": total})

    return report
