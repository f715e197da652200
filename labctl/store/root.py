"""Where the run store is: ``--data``, else ``$LABCTL_DATA``, else ``./labdata``."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA = "labdata"


def data_root(data: str | Path | None) -> str | Path:
    """A local path or an object-storage URI, as given (a Path would fold the ``//`` of ``s3://``)."""
    chosen = data or os.environ.get("LABCTL_DATA") or DEFAULT_DATA
    return str(chosen) if "://" in str(chosen) else Path(chosen)
