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

__all__ = ["__version__", "open_store"]


def open_store(root: Any = None) -> Any:
    """The run store at ``root`` (default: ``$LABCTL_DATA`` or ``./labdata``); see ``labctl.store.query``."""
    from labctl.store.query import open_store as _open_store

    return _open_store(root)
