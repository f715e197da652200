"""labctl.store.arrow_columns: the same Arrow arrays pa.array builds, without importing pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.store.arrow_columns import record_batch, to_arrow
from labctl.store.schemas import SCHEMAS

NUMERIC = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64(),
           pa.float32(), pa.float64()]


@pytest.mark.parametrize("field_type", NUMERIC, ids=str)
@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_numeric_columns_equal_pyarrows_own(field_type, n):
    values = (np.random.default_rng(n).random(n) * 100).astype(field_type.to_pandas_dtype())
    assert to_arrow(values, field_type).equals(pa.array(values, type=field_type))
    strided = np.repeat(values, 2)[::2]  # not contiguous
    assert to_arrow(strided, field_type).equals(pa.array(strided, type=field_type))


@given(st.lists(st.booleans(), max_size=70))
@settings(max_examples=60, deadline=None)
def test_booleans_are_packed_as_arrow_packs_them(values):
    array = np.array(values, dtype=bool)
    assert to_arrow(array, pa.bool_()).equals(pa.array(array, type=pa.bool_()))


@given(st.lists(st.text(max_size=6), max_size=20))
@settings(max_examples=60, deadline=None)
def test_strings_are_laid_out_as_arrow_lays_them_out(values):
    assert to_arrow(values, pa.string()).equals(pa.array(values, type=pa.string()))


def test_timestamps_of_the_fields_unit_pass_as_ticks_and_others_are_converted():
    field_type = pa.timestamp("us", tz="UTC")
    ticks = np.array(["2026-12-07T16:32:46.123456", "2027-01-01"], dtype="datetime64[us]")
    assert to_arrow(ticks, field_type).equals(pa.array(ticks, type=field_type))
    with_nat = np.array(["2026-12-07", "NaT"], dtype="datetime64[us]")
    assert to_arrow(with_nat, field_type).null_count == 1
    seconds = ticks.astype("datetime64[s]")
    assert to_arrow(seconds, field_type).equals(pa.array(seconds, type=field_type))


def test_a_conversion_that_could_lose_values_is_left_to_pyarrow_which_refuses_it():
    with pytest.raises(pa.ArrowInvalid):
        to_arrow(np.array([70000], dtype=np.int64), pa.int16())
    assert to_arrow(np.array([3], dtype=np.int64), pa.int16()).equals(pa.array([3], type=pa.int16()))


def test_a_batch_needs_every_field():
    schema = pa.schema([("a", pa.int32()), ("b", pa.float32())])
    with pytest.raises(KeyError, match="no column for b"):
        record_batch({"a": np.zeros(2, np.int32)}, schema)


def test_storing_reads_imports_no_pandas():
    """The point of the module: a process that stores measurements does not load pandas."""
    code = (
        "import sys, tempfile, numpy as np\n"
        "from labctl.store.writer import TableWriter\n"
        "from labctl.store.schemas import SCHEMAS\n"
        "from labctl.runs.recorder import constant_text\n"
        "n = 64\n"
        "columns = {'t_s': np.zeros(n), 'wall_time': np.full(n, np.datetime64('2026-12-07', 'us')),\n"
        "           'phase': constant_text('verify', n), 'iteration': np.zeros(n, np.int32),\n"
        "           'array': np.zeros(n, np.int16), 'row': np.zeros(n, np.int16), 'col': np.arange(n, dtype=np.int16),\n"
        "           'code': np.zeros(n, np.int16), 'g_us': np.ones(n, np.float32), 'temperature_k': np.ones(n, np.float32)}\n"
        "with tempfile.TemporaryDirectory() as d:\n"
        "    writer = TableWriter(d, SCHEMAS['reads'])\n"
        "    writer.append(columns)\n"
        "    writer.flush()\n"
        "    assert writer.rows_written == n\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert set(SCHEMAS["reads"].names) >= {"t_s", "phase", "g_us"}  # the columns built above are the table's
