"""Fixed, typed schemas of the run store's tables (DESIGN.md, "The run store").

Every part file of a table has exactly this schema, so pandas, DuckDB, polars and
Spark can read a whole table (all chips, all runs) as one dataset. ``chip`` and
``run`` are not columns in the files: they are the Hive partition directories.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

WALL_TIME = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    # Every read has every value: its columns are required (``not null``), which spares Parquet
    # a definition level per value, a quarter of a part's encoding. Parts written before, with
    # the same columns optional, read back beside these in pyarrow, DuckDB and polars.
    "reads": pa.schema(
        [
            pa.field(name, field_type, nullable=False)
            for name, field_type in (
                ("t_s", pa.float64()),  # board clock, seconds since the run started
                ("wall_time", WALL_TIME),
                ("phase", pa.string()),
                ("iteration", pa.int32()),
                ("array", pa.int16()),
                ("row", pa.int16()),
                ("col", pa.int16()),
                ("code", pa.int16()),
                ("g_us", pa.float32()),
                ("temperature_k", pa.float32()),
            )
        ]
    ),
    "pulses": pa.schema(
        [
            ("t_s", pa.float64()),
            ("wall_time", WALL_TIME),
            ("iteration", pa.int32()),
            ("array", pa.int16()),
            ("row", pa.int16()),
            ("col", pa.int16()),
            ("polarity", pa.int8()),  # +1 SET, -1 RESET
            ("amplitude_v", pa.float32()),  # magnitude
            ("width_ns", pa.int32()),
            ("g_before_us", pa.float32()),
            ("g_after_us", pa.float32()),
        ]
    ),
    "cells": pa.schema(
        [
            ("array", pa.int16()),
            ("row", pa.int16()),
            ("col", pa.int16()),
            ("target_us", pa.float32()),
            ("achieved_us", pa.float32()),
            ("pulses", pa.int32()),
            ("converged", pa.bool_()),
            ("stuck", pa.bool_()),
            ("aimed_us", pa.float32()),  # what the cell was programmed to: the target, or a stuck partner's compensation
        ]
    ),
}

SCHEMAS["readout"] = pa.schema(
    [
        ("array", pa.int16()),
        ("col", pa.int16()),
        ("gain", pa.float64()),
        ("offset_lsb", pa.float64()),
        ("residual_rms_lsb", pa.float32()),
        ("source_run", pa.string()),  # the run whose read-out calibration this is
    ]
)
SCHEMAS["mvm"] = pa.schema(
    [
        ("input_id", pa.int32()),
        ("col", pa.int16()),
        ("expected_ua", pa.float64()),
        ("measured_ua", pa.float64()),
        ("corrected_ua", pa.float64()),
        ("held_out", pa.bool_()),  # not used to fit the correction
        ("intended_ua", pa.float64()),  # what the intended matrix (the targets) computes for this input
    ]
)
SCHEMAS["refine"] = pa.schema(
    [
        ("round", pa.int16()),
        ("array", pa.int16()),
        ("row", pa.int16()),
        ("col", pa.int16()),
        ("estimate_us", pa.float32()),  # the cell's error against the intended matrix, from the MVM error alone
        ("estimate_sigma_us", pa.float32()),  # its standard error
        ("picked", pa.bool_()),  # sent through write-verify again this round
        ("achieved_us", pa.float32()),  # its read after the round (unchanged where not picked)
    ]
)
SCHEMAS["maintain"] = pa.schema(
    [
        ("tick", pa.int32()),
        ("t_s", pa.float64()),  # since the maintenance began (just after programming), board clock
        ("l2_mean", pa.float64()),  # against the intended matrix, output scale re-fitted at this tick
        ("worst_output", pa.float64()),
        ("noise_floor_l2", pa.float64()),
        ("stale_l2_mean", pa.float64()),  # with the output scale of tick 0 (a deployment left alone)
        ("previous_l2_mean", pa.float64()),  # with the previous tick's scale (what was computed until now)
        ("nu", pa.float64()),  # drift exponent measured since the previous tick (NaN: not yet)
        ("refreshed", pa.int32()),  # cells re-programmed after this look
        ("board_s", pa.float64()),  # board time this tick's looking and refreshing took (not the wait)
    ]
)
SCHEMAS["validation"] = pa.schema(
    [
        ("look", pa.int16()),  # 0 at once after programming, then one per later look
        ("t_s", pa.float64()),  # since the network was programmed, board clock
        ("sample", pa.int32()),
        ("label", pa.int16()),
        ("predicted", pa.int16()),  # by the network computing on the chip
        ("correct", pa.bool_()),
        ("float_predicted", pa.int16()),  # the float model, same sample
        ("quantised_predicted", pa.int16()),  # the model at the chip's precision in software
        ("maintained", pa.bool_()),  # the tiles' output scales re-fitted before this look
    ]
)
SCHEMAS["solve"] = pa.schema(
    [
        ("column", pa.int32()),  # right-hand side: column of B
        ("rows", pa.int32()),  # of the system
        ("leaves", pa.int16()),  # programmings of the loop the block recursion took
        ("refine_steps", pa.int16()),  # digital residual corrections after the one-step solve
        ("settled", pa.bool_()),  # every solve of this column settled (no rail); else no result
        ("chip_rel_error", pa.float64()),  # ‖x − x*‖/‖x*‖ against numpy's float64 solution
        ("digital_rel_error", pa.float64()),  # the digital solver at the chip's precision, same measure
        ("chip_vs_digital", pa.float64()),
        ("board_s", pa.float64()),  # board time of this column's solves, refinements included
        ("solves", pa.int32()),  # solves of this column, retries at half input and refinements included
    ]
)
SCHEMAS["drift"] = pa.schema(
    [
        ("array", pa.int16()),
        ("row", pa.int16()),
        ("col", pa.int16()),
        ("nu", pa.float32()),
        ("g0_us", pa.float32()),  # fitted conductance at the protocol's drift.fit_start_s after programming
        ("r2", pa.float32()),
        ("temperature_k", pa.float32()),  # of the segment the fit is from
        ("nu_se", pa.float32()),  # ν's standard error from its fit: the part of ν's spread that is the fits' own
    ]
)


# Measured values, nearly every one distinct: dictionary encoding only costs time there (Parquet
# tries a dictionary and falls back to plain pages once it overflows). Every other column is
# dictionary-encoded: constant per read (phase, board time, temperature) or of few values.
# Measured on 2M reads rows: 7.2 M rows/s written with a dictionary tried everywhere, 12.5 M
# with these plain (and 20 % smaller files).
PLAIN_COLUMNS: dict[str, frozenset[str]] = {
    "reads": frozenset({"g_us"}),
    "pulses": frozenset({"amplitude_v", "g_before_us", "g_after_us"}),
    "cells": frozenset({"target_us", "achieved_us", "aimed_us"}),
}


@dataclass(frozen=True)
class Layout:
    """How a table's columns are encoded in Parquet: which get a dictionary, which are
    split by byte stream (floats of few distinct values), and which string columns arrive
    already dictionary-encoded in Arrow (so Parquet writes their dictionary without hashing
    every value). Readers see the schema above either way: the files carry no Arrow schema
    hint when a column arrives dictionary-encoded, so it reads back as the string it is."""

    dictionary: tuple[str, ...]
    byte_stream_split: tuple[str, ...] = ()
    arrow_dictionary: tuple[str, ...] = ()
    without_statistics: tuple[str, ...] = ()  # no min/max: a query would prune nothing by them
    uncompressed: tuple[str, ...] = ()  # dictionary columns of a few values: their pages are runs no codec shrinks

    def statistics(self, schema: pa.Schema) -> bool | list[str]:
        """pyarrow's ``write_statistics``: every column, or every column but ``without_statistics``."""
        return [name for name in schema.names if name not in self.without_statistics] if self.without_statistics \
            else True

    def compression(self, schema: pa.Schema, codec: str) -> str | dict[str, str]:
        """pyarrow's ``compression``: ``codec`` for every column but the ``uncompressed`` ones."""
        if not self.uncompressed:
            return codec
        return {name: "none" if name in self.uncompressed else codec for name in schema.names}

    def write_schema(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` with the ``arrow_dictionary`` columns typed as the dictionaries they arrive as."""
        for name in self.arrow_dictionary:
            index = schema.get_field_index(name)
            field = schema.field(index)
            schema = schema.set(index, pa.field(name, pa.dictionary(pa.int32(), field.type), nullable=field.nullable))
        return schema


# The reads table is the store's largest (a 256x256 read is 65,536 rows), so its layout is
# chosen column by column, by encoding time per part at the same file size (pyarrow 21-26,
# zstd): small integers (iteration, array, row, col), board time and wall time plain, with
# zstd (board and wall time are a few values a part: zstd takes their runs to a kilobyte in
# 0.35 ms where a dictionary hashed every value in 0.8-1.0 ms, pyarrow 26 on required
# columns); the temperature split by byte stream, 0.42 against 1.19; the phase handed over as
# an Arrow dictionary, 0.15 against 1.45, uncompressed (its pages are runs of one index: zstd
# shrank them by nothing); the ADC code keeps its dictionary (a byte-stream split is faster
# and 15 % larger). The phase, the array and the temperature carry no min/max statistics,
# which were 1.4 of the 14.4 ms a four-read part took to encode (phase's alone 0.9 ms,
# pyarrow 26). A filter on them still works: DuckDB or polars read the column (a kilobyte a
# part, one value a read) instead of skipping parts by their min/max. Nor do the column, the
# ADC code and the conductance: every part holds whole reads, so their min and max span the
# array and the range, and prune nothing. A four-read part, pyarrow 26: 9.9 ms with board and
# wall time as dictionaries on optional columns, 7.2 on required ones, 6.2 with board and wall
# time plain (1.31 MB each).
LAYOUTS: dict[str, Layout] = {
    "reads": Layout(dictionary=("phase", "code"), byte_stream_split=("temperature_k",),
                    arrow_dictionary=("phase",),
                    without_statistics=("phase", "array", "temperature_k", "col", "code", "g_us"),
                    uncompressed=("phase",)),
}


def layout(name: str) -> Layout:
    if name in LAYOUTS:
        return LAYOUTS[name]
    plain = PLAIN_COLUMNS.get(name, frozenset())
    return Layout(dictionary=tuple(field.name for field in SCHEMAS[name] if field.name not in plain))
