"""Numpy columns as Arrow arrays, without pyarrow's pandas probe.

Why: ``pa.array`` (and so ``RecordBatch.from_pydict``) first asks whether its input is a
pandas object, which imports pandas: a quarter of a second in every process that stores a
measurement, ``labctl calibrate`` included, though nothing there uses pandas. A numpy
column whose dtype is exactly the field's is handed to Arrow as its buffer (no copy);
booleans are bit-packed, timestamps of the field's unit passed as their int64 ticks, and
lists of strings laid out as offsets and bytes. Anything else (a conversion that could
overflow or lose precision, nulls, nested values) goes through ``pa.array``, which checks it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

_FIXED_WIDTH: dict[pa.DataType, np.dtype] = {
    pa.int8(): np.dtype(np.int8),
    pa.int16(): np.dtype(np.int16),
    pa.int32(): np.dtype(np.int32),
    pa.int64(): np.dtype(np.int64),
    pa.uint8(): np.dtype(np.uint8),
    pa.uint16(): np.dtype(np.uint16),
    pa.uint32(): np.dtype(np.uint32),
    pa.uint64(): np.dtype(np.uint64),
    pa.float32(): np.dtype(np.float32),
    pa.float64(): np.dtype(np.float64),
}


def to_arrow(values: Any, field_type: pa.DataType) -> pa.Array:
    """One column as an Arrow array of ``field_type``."""
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, np.ndarray) and values.ndim == 1:
        converted = _from_numpy(values, field_type)
        if converted is not None:
            return converted
    if pa.types.is_string(field_type) and isinstance(values, (list, tuple)) and all(type(v) is str for v in values):
        return _strings(values)
    return pa.array(values, type=field_type)


def record_batch(columns: dict[str, Any], schema: pa.Schema) -> pa.RecordBatch:
    """A batch of ``schema`` from its columns by name (every field must be given)."""
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise KeyError(f"no column for {', '.join(missing)}")
    arrays = [to_arrow(columns[f.name], f.type) for f in schema]
    for field, array in zip(schema, arrays):
        if not field.nullable and array.null_count:
            raise ValueError(f"column {field.name!r} has {array.null_count} missing value(s); "
                             f"the table requires one in every row")
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _from_numpy(values: np.ndarray, field_type: pa.DataType) -> pa.Array | None:
    dtype = _FIXED_WIDTH.get(field_type)
    if dtype is not None and values.dtype == dtype:
        data = np.ascontiguousarray(values)
        return pa.Array.from_buffers(field_type, len(data), [None, pa.py_buffer(data)])
    if pa.types.is_boolean(field_type) and values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(field_type, len(values), [None, pa.py_buffer(bits)])
    if pa.types.is_timestamp(field_type) and values.dtype == np.dtype(f"datetime64[{field_type.unit}]"):
        if np.isnat(values).any():
            return None  # NaT is a null: pa.array knows how
        ticks = np.ascontiguousarray(values).view(np.int64)
        return pa.Array.from_buffers(field_type, len(values), [None, pa.py_buffer(ticks)])
    return None


def _strings(values: list[str] | tuple[str, ...]) -> pa.Array:
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(encoded),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])
