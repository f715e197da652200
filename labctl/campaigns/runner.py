"""``labctl campaign run``: a campaign's tasks submitted to Dask, followed to the end.

Each task asks for its chip's resource, so it waits for the worker that owns the chip;
a task runs after the tasks it is ``after`` (their results are its arguments). A worker
that dies takes its task with it: the scheduler hands the task out again once a worker
owning the chip is back, and the task then resumes its run from the journal (see
``task``). A chip whose host stays away for ``host_timeout_s`` is reported with its
remaining tasks, and the rest of the campaign goes on. With no scheduler, a local cluster
on this host owns every chip of the campaign.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.campaigns.spec import Task, chip_resource, load_campaign
from labctl.campaigns.task import PROGRESS_TOPIC, run_task
from labctl.errors import LabctlError

POLL_S = 0.5


def run_campaign(path: str | Path, *, scheduler: str | None = None, data: str | None = None,
                 config: str | Path | None = None, host_timeout_s: float = 900.0,
                 say: Callable[[str], None] = lambda line: None) -> list[dict[str, Any]]:
    """One result per task, in the campaign's order (``status``: completed, failed, skipped,
    lost: its worker died more often than the scheduler allows, or host gone: the chip's host
    did not come back within ``host_timeout_s``). Every call is a submission of its own, named
    in each result: its tasks' runs are its own, never an earlier submission's."""
    campaign, tasks = load_campaign(path)
    submission = f"{campaign.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    tasks = [dataclasses.replace(task, submission=submission) for task in tasks]
    chips = sorted({task.chip for task in tasks})
    if scheduler is None:
        from labctl.rigs.config import resolve_chip

        for chip in chips:  # here, every chip is this host's: check them before anything starts
            resolve_chip(chip, config=config)
    elif data is None:
        say("no --data: each worker writes to its own host's default store, not one shared store")
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(LocalCluster(
                n_workers=1, threads_per_worker=len(chips), processes=True, host="127.0.0.1", dashboard_address=":0",
                resources={chip_resource(chip): 1 for chip in chips},
                silence_logs=logging.ERROR))  # its shutdown chatter is not the campaign's news
            say(f"campaign {submission}: a local cluster owns {', '.join(chips)}; dashboard {cluster.dashboard_link}")
            task_config = str(Path(config).resolve()) if config is not None else None
        else:
            task_config = None  # each worker runs with its own host's lab.toml
        try:
            client = stack.enter_context(Client(cluster if scheduler is None else scheduler, timeout=30))
        except OSError as err:
            raise LabctlError(f"--scheduler {scheduler}: cannot connect: {err}") from None
        if scheduler is not None:
            say(f"campaign {submission}: {len(tasks)} tasks on {scheduler}; dashboard {client.dashboard_link}")
        client.subscribe_topic(PROGRESS_TOPIC, lambda event: _say_progress(event, say))
        return _follow(client, tasks, data, task_config, host_timeout_s, say)


def _follow(client, tasks: list[Task], data: str | None, config: str | None, host_timeout_s: float,
            say: Callable[[str], None]) -> list[dict[str, Any]]:
    from distributed import wait

    futures: dict[str, Any] = {}
    for task in tasks:
        upstream = [futures[before] for before in task.after]
        key = f"{task.chip}-{task.stage.name}-{uuid.uuid4().hex}"  # Dask's dashboard groups by the chip-stage part
        futures[task.id] = client.submit(run_task, task, data, config, *upstream, key=key,
                                         resources={task.resource: 1}, pure=False, retries=0)
    by_key = {future.key: task for task, future in zip(tasks, futures.values())}
    results: dict[str, dict[str, Any]] = {}
    absent_since: dict[str, float] = {}
    pending = set(futures.values())
    while pending:
        try:
            done, pending = wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED")
        except TimeoutError:  # nothing finished this poll
            done = set()
        for future in done:
            task = by_key[future.key]
            results[task.id] = _result_of(task, future)
            say(_line(results[task.id]))
        owners = _chips_with_a_worker(client, {task.chip for task in tasks})
        now = time.monotonic()
        for chip in {by_key[future.key].chip for future in pending}:
            if chip in owners:
                absent_since.pop(chip, None)
                continue
            since = absent_since.setdefault(chip, now)
            if now - since >= host_timeout_s:
                gone = [future for future in pending if by_key[future.key].chip == chip]
                client.cancel(gone)
                for future in gone:
                    task = by_key[future.key]
                    results[task.id] = {"task": task.id, "chip": chip, "stage": task.stage.name, "status": "host gone",
                                        "action": "not run", "run_id": None, "passed": None,
                                        "error": f"no worker owned {chip} for {host_timeout_s:g} s"}
                    say(_line(results[task.id]))
                pending -= set(gone)
    return [results[task.id] for task in tasks]


def _result_of(task: Task, future) -> dict[str, Any]:
    if future.status == "finished":
        return future.result()
    error = future.exception() if future.status == "error" else None
    from distributed import KilledWorker

    status = "lost" if isinstance(error, KilledWorker) else "failed"
    return {"task": task.id, "chip": task.chip, "stage": task.stage.name, "status": status, "action": "not run",
            "run_id": None, "passed": None, "error": f"{type(error).__name__}: {error}" if error else future.status}


def _chips_with_a_worker(client, chips: set[str]) -> set[str]:
    """The campaign's chips some worker owns now (advertises the chip's resource)."""
    owned = {resource for worker in client.scheduler_info(n_workers=-1).get("workers", {}).values()
             for resource in worker.get("resources", {})}
    return {chip for chip in chips if chip_resource(chip) in owned}


def _line(result: dict[str, Any]) -> str:
    run = f" run {result['run_id']}" if result.get("run_id") else ""
    verdict = {True: ", passed", False: ", acceptance not met"}.get(result.get("passed"), "")
    error = f": {result['error']}" if result.get("error") else ""
    return f"{result['task']}: {result['status']} ({result['action']}){run}{verdict}{error}"


def _say_progress(event: Any, say: Callable[[str], None]) -> None:
    _, message = event if isinstance(event, tuple) else (None, event)
    if isinstance(message, dict) and message.get("total"):
        say(f"{message['task']}: {message['step']} {100 * message['done'] / message['total']:.0f} %")
