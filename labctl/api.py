"""The Python API; the CLI is a thin layer over it.

``calibrate`` validates every input (chip, protocol, targets, data directory) before
it creates a run, so bad input never leaves a run behind; once the run exists, any
failure marks it ``failed`` with the reason and keeps what was measured.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from calibration.readout import Readout
from calibration.targets import TargetError, check_targets, ramp
from calibration.write_verify import WriteVerify, WriteVerifyResult
from drivers.errors import DriverError
from labctl import __version__
from labctl.config import ChipSpec, resolve_chip
from labctl.errors import RunFailed, UsageError
from labctl.outcome import CalibrationOutcome, acceptance_checks
from labctl.protocol import LoadedProtocol, load_protocol
from labctl.recorder import ProgressCallback, StoreRecorder
from labctl.rig import Rig, open_rig
from labctl.store.run import Run, RunStore
from labctl.targets_file import read_targets

DEFAULT_DATA = "labdata"


def data_root(data: str | Path | None) -> Path:
    return Path(data or os.environ.get("LABCTL_DATA") or DEFAULT_DATA)


def calibrate(
    chip: str = "chip0",
    *,
    seed: int | None = None,
    size: str | None = None,
    targets: str | Path | None = None,
    protocol: str | Path | None = None,
    data: str | Path | None = None,
    config: str | Path | None = None,
    progress: ProgressCallback | None = None,
    keep_rig: list[Rig] | None = None,
) -> CalibrationOutcome:
    """Calibrate ``chip`` and store the run; raises ``UsageError`` or ``RunFailed``.

    ``keep_rig`` (tests) receives the rig, so a test can inspect the twin afterwards.
    """
    started = time.perf_counter()
    spec = resolve_chip(chip, seed=seed, size=size, config=config)
    loaded = load_protocol(protocol)
    _check_protocol_limits(loaded, spec)
    user_targets = read_targets(targets) if targets is not None else None
    store = RunStore(data_root(data))

    with open_rig(spec) as rig:
        if keep_rig is not None:
            keep_rig.append(rig)
        spec = rig.spec  # now with the board's geometry
        target_matrix = _targets(loaded, spec, user_targets, targets)
        store.check_writable()
        run = store.create_run(spec.name, _provenance(spec, loaded, rig, targets))
        try:
            result, temperature = _write_verify(run, rig, loaded, target_matrix, progress)
        except (DriverError, OSError) as err:
            run.finish("failed", error=str(err))
            raise RunFailed(f"run {run.id} failed: {err}") from err
        except BaseException as err:
            run.finish("aborted" if isinstance(err, KeyboardInterrupt) else "failed", error=repr(err))
            raise
        outcome = CalibrationOutcome(
            run.id, spec.name, str(store.root), result,
            acceptance_checks(result, loaded.protocol.acceptance),
            time.perf_counter() - started, temperature,
        )
        summary = outcome.summary()
        run.finish("completed", summary=summary, acceptance=summary["acceptance"], passed=outcome.passed)
    return outcome


def _check_protocol_limits(loaded: LoadedProtocol, spec: ChipSpec) -> None:
    """Refuse a protocol that would ask for more than the chip's safe operating area."""
    wv, safe = loaded.protocol.write_verify, spec.soa
    for key, value, limit in (
        ("set_max_mv", wv.set_max_mv, safe.set_max_mv),
        ("reset_max_mv", wv.reset_max_mv, safe.reset_max_mv),
        ("width_ns", wv.width_ns, safe.width_max_ns),
        ("read_voltage", wv.read_voltage, safe.read_voltage_max_v),
    ):
        if value > limit:
            raise UsageError(
                f"{loaded.source}: write_verify.{key} = {value} exceeds {spec.name}'s safe limit {limit}"
            )


def _targets(loaded: LoadedProtocol, spec: ChipSpec, user: np.ndarray | None, source: Any) -> np.ndarray:
    shape = (spec.rows, spec.cols)
    if user is None:
        t = loaded.protocol.targets
        matrix, where = ramp(shape, t.low_us, t.high_us, t.levels), f"{loaded.source} [targets]"
    else:
        matrix, where = user, f"targets file {str(source)!r}"
    try:
        return check_targets(matrix, shape, spec.window_us)
    except TargetError as err:
        raise UsageError(f"{where}: {err}") from None


def _write_verify(run: Run, rig: Rig, loaded: LoadedProtocol, targets: np.ndarray,
                  progress: ProgressCallback | None) -> tuple[WriteVerifyResult, float]:
    board = rig.board
    params = loaded.protocol.write_verify
    adc = board.adc()
    t0, temperature = board.clock_and_temperature()
    recorder = StoreRecorder(run, array=0, t0_s=t0, cols=rig.spec.cols, progress=progress)
    readout = Readout(lsb_ua=adc.lsb_ua, read_voltage=params.read_voltage)
    result = WriteVerify(board, readout, params, recorder).run(targets)
    _record_cells(run, result)
    run.step_done(
        "write_verify",
        iterations=result.iterations,
        converged_fraction=result.converged_fraction,
        readout="nominal (uncalibrated)",
    )
    return result, temperature


def _record_cells(run: Run, result: WriteVerifyResult) -> None:
    rows, cols = np.indices(result.targets_us.shape)
    n = result.targets_us.size
    run.table("cells").append(
        {
            "array": np.zeros(n, dtype=np.int16),
            "row": rows.ravel().astype(np.int16),
            "col": cols.ravel().astype(np.int16),
            "target_us": result.targets_us.ravel().astype(np.float32),
            "achieved_us": result.achieved_us.ravel().astype(np.float32),
            "pulses": result.pulses.ravel(),
            "converged": result.converged.ravel(),
            "stuck": result.stuck.ravel(),
        }
    )


def _provenance(spec: ChipSpec, loaded: LoadedProtocol, rig: Rig, targets: Any) -> dict[str, Any]:
    return {
        "labctl_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "user": _user(),
        "command": sys.argv,
        "chip_spec": spec.describe(),
        "seed": spec.config.twin.seed if spec.config.twin else None,
        "preset": spec.config.twin.preset if spec.config.twin else None,
        "instruments": rig.snapshot(),
        "protocol": {"source": loaded.source, "sha256": loaded.sha256, "content": loaded.text},
        "targets": {"source": str(targets) if targets is not None else "protocol pattern"},
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
