"""MVM checks: self-consistency against the conductances just read, and the deployed matrix's accuracy.

The *self-consistency* figures compare each MVM with what the array's conductances, as
the calibrated board reads them just before, predict: they show whether the MVM path
agrees with the read path, not whether the chip computes what was asked (stuck cells and
programming error cancel out of them). What was asked is judged by
``labctl_calibration.accuracy`` against the intended matrix, on the same vectors.

Expected outputs for self-consistency come from the read conductances and the inputs: ``I_c = Σ_i v_i · G_ic`` with ``v_i = dac_i / 127 ·
V_read``. The board's MVM path divides the column sum by the number of rows before
its ADC (the twin documents this; PROTOCOL.md is silent), so a measured code maps back
to ``I_c = (code - offset_c) / gain_c · LSB · rows``. Half the input vectors fit the
correction ``I_measured = a_c · I_expected + b_c`` per column; the other half, not
used in the fit, are what the reported errors are computed on. Full scale is the
largest output the programmed matrix can give: ``V_read · max_c Σ_i G_ic``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labctl_calibration.accuracy import DeployedAccuracy, deployed_accuracy
from labctl_calibration.readout import Readout
from labctl_drivers.board import Board


class MvmParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    vectors: int = Field(64, ge=4, le=100_000)
    averaging: int = Field(16, ge=1, le=256)
    reference_reads: int = Field(8, ge=1, le=256)
    seed: int = Field(0, ge=0)


@dataclass(frozen=True)
class MvmResult:
    inputs: np.ndarray  # (vectors, rows) DAC codes
    expected_ua: np.ndarray  # (vectors, cols)
    measured_ua: np.ndarray
    corrected_ua: np.ndarray
    slope: np.ndarray  # per column
    intercept_ua: np.ndarray
    full_scale_ua: float
    test: np.ndarray  # which vectors were held out of the fit
    repeat_ua: np.ndarray  # the held-out vectors measured a second time (the noise floor)
    intended_ua: np.ndarray | None  # (vectors, cols): what the intended matrix computes, when one was given
    deployed: DeployedAccuracy | None  # its figures

    def _stats(self, values: np.ndarray) -> dict[str, float]:
        error = (values - self.expected_ua)[self.test]
        return {"rms_fs": float(np.sqrt(np.mean(error**2)) / self.full_scale_ua),
                "worst_fs": float(np.abs(error).max() / self.full_scale_ua)}

    @property
    def raw(self) -> dict[str, float]:
        return self._stats(self.measured_ua)

    @property
    def corrected(self) -> dict[str, float]:
        return self._stats(self.corrected_ua)


def check_mvm(board: Board, readout: Readout, params: MvmParams, intended_us: np.ndarray | None = None) -> MvmResult:
    """Random signed inputs through the MVM path; ``intended_us`` (the targets) adds the
    deployed matrix's figures for the same vectors."""
    g = board.geometry()
    board.read_voltage = readout.read_voltage
    board.averaging = 256
    conductance = np.mean([readout.conductance_us(board.read_array()) for _ in range(params.reference_reads)], axis=0)
    rng = np.random.default_rng(params.seed)
    inputs = rng.integers(-127, 128, size=(params.vectors, g.rows))
    board.averaging = params.averaging
    volts = inputs / 127.0 * readout.read_voltage
    expected = volts @ conductance
    test = np.arange(params.vectors) % 2 == 1

    def outputs_ua(vectors: np.ndarray) -> np.ndarray:
        codes = np.stack([board.mvm(vector) for vector in vectors]).astype(float)
        return (codes - readout.offset) / readout.gain * readout.lsb_ua * g.rows

    measured = outputs_ua(inputs)
    repeat = outputs_ua(inputs[test])
    fit = ~test
    slope = np.empty(g.cols)
    intercept = np.empty(g.cols)
    for c in range(g.cols):
        slope[c], intercept[c] = np.polyfit(expected[fit, c], measured[fit, c], 1)
    corrected = (measured - intercept) / slope
    full_scale = float(readout.read_voltage * conductance.sum(axis=0).max())
    intended = None if intended_us is None else volts @ intended_us
    deployed = None if intended_us is None else deployed_accuracy(intended_us, volts, measured, repeat, test)
    return MvmResult(inputs, expected, measured, corrected, slope, intercept, full_scale, test, repeat, intended,
                     deployed)
