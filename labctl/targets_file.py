"""Reading a user's matrix (target conductances in µS, or signed weights) from a file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from labctl.errors import UsageError

SUPPORTED = (".npy", ".csv", ".parquet")


def read_targets(path: Path | str, kind: str = "targets") -> np.ndarray:
    """The matrix in the file; its shape and values are checked against the chip later.

    A Parquet file holds one column per array column (any names), one row per array row.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise UsageError(f"{kind} file {str(path)!r}: unsupported type {suffix or '(none)'!r}; "
                         f"use {', '.join(SUPPORTED)}")
    if not path.is_file():
        raise UsageError(f"{kind} file {str(path)!r} not found")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".csv":
            with warnings.catch_warnings():  # an empty file is a shape error below, not a warning on stderr
                warnings.simplefilter("ignore")
                return np.loadtxt(path, delimiter=",", ndmin=2)
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return np.column_stack([column.to_numpy(zero_copy_only=False) for column in table.columns])
    except Exception as err:  # noqa: BLE001 - numpy and pyarrow raise many kinds; all mean "unreadable"
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"{kind} file {str(path)!r} cannot be read: {first_line}") from None
