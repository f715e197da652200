"""The interactive rig: instruments plus calibration routines as functions on numpy arrays.

What ``labctl calibrate`` does step by step, a notebook can do piece by piece, with the
same locks, limits and safe state on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from labctl_calibration.mvm import MvmParams, MvmResult, check_mvm
from labctl_calibration.readout import Readout
from labctl_calibration.readout_calibration import ReadoutCalibrationParams, calibrate_readout
from labctl_calibration.write_verify import WriteVerify, WriteVerifyParams, WriteVerifyResult
from labctl.rigs.config import resolve_chip
from labctl.errors import UsageError
from labctl.rigs.lock import chip_lock
from labctl.rigs.rig import Rig, open_rig


class Session:
    def __init__(self, rig: Rig) -> None:
        self._rig = rig
        adc = rig.board.adc()
        self.readout_model = Readout(adc.lsb_ua, 0.2)

    def __getattr__(self, name: str) -> Any:  # board, smu, temperature, spec, identity, twin
        return getattr(self._rig, name)

    def readout(self, params: ReadoutCalibrationParams | None = None) -> Readout:
        """Calibrate the column read-out against the SMU; later calls use the result."""
        if self._rig.smu is None:
            raise UsageError(f"{self._rig.spec.name} has no SMU to calibrate the read-out against")
        params = params or ReadoutCalibrationParams()
        result = calibrate_readout(self._rig.board, self._rig.smu, params, WriteVerifyParams())
        self.readout_model = result.readout(self._rig.board.adc().lsb_ua, params.read_voltage)
        return self.readout_model

    def read_conductance(self, averaging: int = 64) -> np.ndarray:
        """The whole array in µS, through the current read-out model."""
        board = self._rig.board
        board.read_voltage = self.readout_model.read_voltage
        board.averaging = averaging
        return self.readout_model.conductance_us(board.read_array())

    def program(self, targets_us: np.ndarray, params: WriteVerifyParams | None = None) -> WriteVerifyResult:
        """Write-verify the array to ``targets_us`` (checked against the chip's window)."""
        from labctl_calibration.targets import TargetError, check_targets

        try:
            targets = check_targets(targets_us, (self._rig.spec.rows, self._rig.spec.cols), self._rig.spec.window_us)
        except TargetError as err:
            raise UsageError(f"targets: {err}") from None
        return WriteVerify(self._rig.board, self.readout_model, params or WriteVerifyParams()).run(targets)

    def mvm(self, params: MvmParams | None = None) -> MvmResult:
        return check_mvm(self._rig.board, self.readout_model, params or MvmParams())


@contextmanager
def open_session(chip: str, config: str | Path | None = None, seed: int | None = None,
                 size: str | None = None) -> Iterator[Session]:
    spec = resolve_chip(chip, seed=seed, size=size, config=config)
    with chip_lock(spec.name, "labctl.open_rig", spec.resources), open_rig(spec) as rig:
        yield Session(rig)
