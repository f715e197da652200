"""labctl: lab control and calibration for analogue in-memory-computing test chips.

``labctl.open_store()`` reads runs back; ``labctl.api`` runs calibrations. Both are
imported on first use, so ``import labctl`` (and ``labctl --help``) stay fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("labctl")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__", "fleet_summary", "open_rig", "open_store"]


def open_store(root: Any = None) -> Any:
    """The run store at ``root`` (default: ``$LABCTL_DATA`` or ``./labdata``); see ``labctl.store.query``."""
    from labctl.store.query import open_store as _open_store

    return _open_store(root)


def fleet_summary(data: Any = None) -> Any:
    """Per chip of the store at ``data``: its last calibration, figures, drift ν and their trend
    (a pandas DataFrame; what ``labctl fleet summary`` prints). Needs DuckDB."""
    from labctl.campaigns.fleet import fleet_summary as _fleet_summary

    return _fleet_summary(data)


def open_rig(chip: str = "chip0", *, config: Any = None, seed: int | None = None, size: str | None = None) -> Any:
    """A context manager over a chip's instruments: ``with labctl.open_rig("chip0") as rig: ...``.

    ``rig.board``, ``rig.smu`` and ``rig.temperature`` are the drivers; ``rig.readout()``,
    ``rig.read_conductance()``, ``rig.program()`` and ``rig.mvm()`` are the calibration
    routines as functions on numpy arrays. The chip is locked while the rig is open and
    left safe (SMU off) when it closes.
    """
    from labctl.rigs.session import open_session

    return open_session(chip, config=config, seed=seed, size=size)
