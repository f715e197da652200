"""The lab as a whole: per chip, its last calibration, its figures, its drift, and their trend.

Calibration figures come from the runs' manifests; drift exponents from the ``drift``
Parquet table, aggregated by DuckDB (on a local store it reads the Parquet files itself;
on object storage pyarrow reads them through the store's filesystem and DuckDB
aggregates the Arrow table), so the same query serves one host's store and the lab's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labctl.errors import UsageError

TREND_RUNS = 5  # the last this many values of a figure, oldest first


def fleet_summary(data: str | Path | None = None):
    """One row per chip (a pandas DataFrame): runs, last calibration (run, time, converged
    fraction, error σ, passed), last drift run's median ν, and the trends of both."""
    import pandas as pd

    from labctl.store.query import open_store

    store = open_store(data)
    runs = _runs(store)
    if runs.empty:
        raise UsageError(f"no runs in {str(store.root)!r}")
    nu = _drift_medians(store)
    runs = runs.merge(nu, on="run_id", how="left")
    rows = []
    for chip, mine in runs.sort_values("started_utc").groupby("chip"):
        calibrations = mine[mine["converged_fraction"].notna()]
        drifts = mine[mine["nu_median"].notna()]
        last = calibrations.iloc[-1] if len(calibrations) else None
        rows.append({
            "chip": chip,
            "runs": len(mine),
            "completed": int((mine["status"] == "completed").sum()),
            "last_calibration": last["run_id"] if last is not None else None,
            "last_calibration_utc": last["started_utc"] if last is not None else pd.NaT,
            "converged_fraction": last["converged_fraction"] if last is not None else None,
            "error_sigma_us": last["error_sigma_us"] if last is not None else None,
            "passed": last["passed"] if last is not None else None,
            "nu_median": drifts["nu_median"].iloc[-1] if len(drifts) else None,
            "converged_trend": [round(float(v), 4) for v in calibrations["converged_fraction"].tail(TREND_RUNS)],
            "nu_trend": [round(float(v), 4) for v in drifts["nu_median"].tail(TREND_RUNS)],
        })
    return pd.DataFrame(rows)


def _runs(store) -> Any:
    import pandas as pd

    rows = []
    for manifest in store.manifests():
        summary = manifest.get("summary") or {}
        rows.append({"run_id": manifest["run_id"], "chip": manifest.get("chip"),
                     "status": manifest.get("status"), "started_utc": pd.Timestamp(manifest.get("started_utc")),
                     "passed": manifest.get("passed"), "converged_fraction": summary.get("converged_fraction"),
                     "error_sigma_us": summary.get("error_sigma_us")})
    return pd.DataFrame(rows, columns=["run_id", "chip", "status", "started_utc", "passed", "converged_fraction",
                                       "error_sigma_us"])


def _drift_medians(store) -> Any:
    """Median fitted ν per run over every cell with a fit, as the drift step's own ``nu_median``
    counts them but for its stuck cells (which do not drift: a fraction of a percent of the cells
    at ν ≈ 0, which moves the median in the fourth digit). A cut on R² would keep, at low
    conductance, only the cells that happen to drift fastest."""
    import pandas as pd

    try:
        import duckdb
    except ImportError:
        raise UsageError("fleet summary needs DuckDB: pip install 'labctl[dask]' (or duckdb)") from None

    empty = pd.DataFrame({"run_id": pd.Series(dtype=str), "nu_median": pd.Series(dtype=float)})
    if not store.fs.listdir(store.fs.path("drift")):
        return empty
    query = ("select run as run_id, median(nu) as nu_median from drift where isfinite(nu) group by run")
    connection = duckdb.connect()
    if store.fs.remote:
        import pyarrow.dataset as ds

        drift = ds.dataset(store.fs.path("drift"), format="parquet", partitioning="hive",
                           filesystem=store.fs.fs).to_table(columns=["nu", "run"])
        connection.register("drift", drift)
    else:
        path = Path(store.fs.path("drift")).as_posix().replace("'", "''")
        connection.execute(f"create view drift as select * from read_parquet('{path}/**/*.parquet', "
                           "hive_partitioning=true)")
    return connection.execute(query).df()
