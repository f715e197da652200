"""Reading a user's target matrix (µS) from a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labctl.errors import UsageError

SUPPORTED = (".npy", ".csv")


def read_targets(path: Path | str) -> np.ndarray:
    """The matrix in the file; shape and window are checked against the chip later."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise UsageError(f"targets file {str(path)!r}: unsupported type {suffix or '(none)'!r}; use .npy or .csv")
    if not path.is_file():
        raise UsageError(f"targets file {str(path)!r} not found")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        return np.loadtxt(path, delimiter=",", ndmin=2)
    except (ValueError, OSError, EOFError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"targets file {str(path)!r} cannot be read: {first_line}") from None
