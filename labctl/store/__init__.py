"""The run store: Hive-partitioned Parquet tables plus one manifest per run."""

from labctl.store.run import Run, RunStore

__all__ = ["Run", "RunStore"]
