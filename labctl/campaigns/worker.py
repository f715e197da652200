"""``labctl worker``: a Dask worker on a rig host that owns the host's chips.

It advertises one resource per chip (``chip:chip1=1``), so the scheduler gives a task only
to the host its chip is plugged into, and never two tasks one chip at once. Its tasks read
this host's lab.toml (``$LABCTL_CONFIG`` is set to it), since each host knows its own
instruments.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from labctl.campaigns.spec import chip_resource
from labctl.errors import UsageError


def owned_chips(config: str | Path | None, chips: list[str] | None) -> list[str]:
    """The chips this worker owns, each resolved from the configuration now, so a bad
    lab.toml or an unknown chip fails here (exit 2), not in the middle of a campaign."""
    from labctl.rigs.config import load_config, resolve_chip

    if not chips:
        lab, _ = load_config(config)
        chips = sorted(lab.chips)
        if not chips:
            raise UsageError("the configuration names no chips: give --chips or a lab.toml with [chips.<name>] tables")
    for chip in chips:
        resolve_chip(chip, config=config)
    return list(chips)


def serve(scheduler: str, chips: list[str], config: str | Path | None, name: str | None = None,
          announce=print) -> None:
    """Run the worker until SIGINT or SIGTERM (or the scheduler goes away)."""
    from distributed import Worker

    if config is not None:
        os.environ["LABCTL_CONFIG"] = str(Path(config).resolve())

    async def run() -> None:
        resources = {chip_resource(chip): 1 for chip in chips}
        async with Worker(scheduler, resources=resources, nthreads=max(1, len(chips)), name=name,
                          dashboard=False) as worker:
            announce(f"labctl worker {worker.name} at {worker.address}: owns {', '.join(chips)} "
                     f"(scheduler {scheduler})")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            finished = asyncio.ensure_future(worker.finished())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([finished, stopping], return_when=asyncio.FIRST_COMPLETED)

    asyncio.run(run())
