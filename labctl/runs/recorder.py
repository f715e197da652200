"""Streams write-verify measurements into the run store as they are made."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
import pyarrow as pa

from labctl.store.arrow_columns import to_arrow
from labctl.store.run import Run

ProgressCallback = Callable[[str, int, int], None]  # step, cells done, all cells


@lru_cache(maxsize=8)
def _zero_indices(count: int) -> pa.Array:
    """Indices of a one-value dictionary (Arrow arrays are immutable: one serves every read)."""
    return to_arrow(np.zeros(count, dtype=np.int32), pa.int32())


def constant_text(text: str, count: int) -> pa.DictionaryArray:
    """``count`` copies of ``text`` as a dictionary of one, which Parquet writes without
    hashing every value (a Python list of 65,536 strings costs 60 times more than Arrow's
    own repeat, and that repeat 1.3 ms more per read to encode than this)."""
    return pa.DictionaryArray.from_arrays(_zero_indices(count), to_arrow([text], pa.string()))


@lru_cache(maxsize=8)
def _cell_columns(row_numbers: bytes, cols: int) -> tuple[pa.Array, pa.Array]:
    """The row and column of every cell of these rows (a full array read asks for the same
    two columns every time: built once, not two numpy passes and two casts a read)."""
    rows = np.frombuffer(row_numbers, dtype=np.int64)
    return (to_arrow(np.repeat(rows, cols).astype(np.int16), pa.int16()),
            to_arrow(np.tile(np.arange(cols, dtype=np.int16), len(rows)), pa.int16()))


@lru_cache(maxsize=16)
def _constant(value: float | int, dtype: str, count: int) -> pa.Array:
    """A column of one value that rarely changes (the array, the temperature at a set point)."""
    values = np.full(count, value, dtype=dtype)
    return to_arrow(values, pa.from_numpy_dtype(values.dtype))


def _wall_times(count: int) -> np.ndarray:
    now = np.datetime64(datetime.now(UTC).replace(tzinfo=None), "us")
    return np.full(count, now)


class StoreRecorder:
    """A ``WriteVerifyObserver`` that writes ``reads`` and ``pulses`` rows."""

    def __init__(self, run: Run, array: int, t0_s: float, cols: int, progress: ProgressCallback | None = None) -> None:
        self.run = run
        self.array = array
        self.t0_s = t0_s
        self.cols = cols
        self.progress = progress
        self.step = "write_verify"

    def on_read(self, phase: str, iteration: int, rows: np.ndarray, codes: np.ndarray, g_us: np.ndarray,
                t_s: float, temperature_k: float) -> None:
        self.run.table("reads").append(self.read_columns(phase, iteration, rows, codes, g_us, t_s, temperature_k))

    def read_columns(self, phase: str, iteration: int, rows: np.ndarray, codes: np.ndarray, g_us: np.ndarray,
                     t_s: float, temperature_k: float) -> dict[str, np.ndarray]:
        """One read as ``reads`` rows; ``t_s`` is board time, stored relative to the run's start."""
        n = codes.size
        row, col = _cell_columns(np.asarray(rows, dtype=np.int64).tobytes(), self.cols)
        return {
                "t_s": np.full(n, t_s - self.t0_s),
                "wall_time": _wall_times(n),
                "phase": constant_text(phase, n),
                "iteration": np.full(n, iteration, dtype=np.int32),
                "array": _constant(self.array, "int16", n),
                "row": row,
                "col": col,
                "code": codes.ravel().astype(np.int16),
                "g_us": g_us.ravel().astype(np.float32),
                "temperature_k": _constant(float(temperature_k), "float32", n),
            }

    def on_pulses(self, iteration: int, rows: np.ndarray, cols: np.ndarray, amplitude_mv: np.ndarray,
                  width_ns: int, g_before_us: np.ndarray, g_after_us: np.ndarray, t_s: float) -> None:
        n = len(rows)
        self.run.table("pulses").append(
            {
                "t_s": np.full(n, t_s - self.t0_s),
                "wall_time": _wall_times(n),
                "iteration": np.full(n, iteration, dtype=np.int32),
                "array": np.full(n, self.array, dtype=np.int16),
                "row": rows.astype(np.int16),
                "col": cols.astype(np.int16),
                "polarity": np.sign(amplitude_mv).astype(np.int8),
                "amplitude_v": (np.abs(amplitude_mv.astype(np.float32)) / 1000.0),
                "width_ns": np.full(n, width_ns, dtype=np.int32),
                "g_before_us": g_before_us.astype(np.float32),
                "g_after_us": g_after_us.astype(np.float32),
            }
        )

    def on_iteration(self, iteration: int, active: int, total: int) -> None:
        if self.progress:
            self.progress(self.step, total - active, total)
