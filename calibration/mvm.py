"""MVM checks: self-consistency against the conductances just read, and the deployed matrix's accuracy.

The *self-consistency* figures compare each MVM with what the array's conductances, as
the calibrated board reads them just before, predict: they show whether the MVM path
agrees with the read path, not whether the chip computes what was asked (stuck cells and
programming error cancel out of them). What was asked is judged by
``labctl_calibration.accuracy`` against the intended matrix, on the same vectors.

Expected outputs for self-consistency come from the read conductances and the inputs:
``I_c = Σ_i v_i · G_ic`` with ``v_i = dac_i / 127 · V_read``. The board's MVM path scales
the column sum by ``MVM:GAIN / rows`` before its ADC (PROTOCOL.md), so a measured code
maps back to ``I_c = (code - offset_c) / gain_c · LSB · rows / MVM:GAIN``. The range is
chosen from the matrix's own outputs (``choose_gain``): at gain 1 one output code is
``rows`` LSBs of current, of which random inputs on a real matrix use a few percent. Half
the input vectors fit the correction ``I_measured = a_c · I_expected + b_c`` per column
(``accuracy.output_scale``, the same fit a deployment's output scale uses); the other half, not
used in the fit, are what the reported errors are computed on. Full scale is the
largest output the programmed matrix can give: ``V_read · max_c Σ_i G_ic``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labctl_calibration.accuracy import DeployedAccuracy, deployed_accuracy, output_scale
from labctl_calibration.readout import Readout
from labctl_drivers.interface import ChipBoard


class MvmParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    vectors: int = Field(64, ge=4, le=100_000)
    averaging: int = Field(16, ge=1, le=256)
    reference_reads: int = Field(8, ge=1, le=256)
    seed: int = Field(0, ge=0)
    # the MVM path's output range (MVM:GAIN): "auto" chooses it from the outputs the matrix gives
    # (bound management), a number fixes it; 1 is the board's default (every row at full input)
    gain: Literal["auto"] | int = "auto"
    headroom: float = Field(0.5, gt=0, le=1)  # "auto": the probes' largest output at most this much of the range
    # board time waited before measuring: a figure taken the moment RRAM cells were verified is one
    # they have not relaxed from yet; the deployed figures then hold for this long after programming
    settle_s: float = Field(0.0, ge=0, le=86_400)


def choose_gain(largest_code: float, top_code: int, rows: int, headroom: float) -> int:
    """The largest power of two (1..rows) that keeps ``largest_code`` (seen at gain 1, offset
    removed) within ``headroom`` of the ADC's range: resolution for the outputs this matrix
    gives, with room for inputs the probes did not try."""
    gain = 1
    while gain * 2 <= rows and largest_code * gain * 2 <= headroom * top_code:
        gain *= 2
    return gain


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
    gain: int  # the MVM:GAIN the vectors were measured at
    clipped: int  # outputs at the ADC's rails (beyond the range)
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


def _top_code(board: ChipBoard) -> int:
    return 2 ** (board.adc().bits - 1) - 1


def measure_outputs(board: ChipBoard, readout: Readout, inputs: np.ndarray, gain: int) -> tuple[np.ndarray, int]:
    """Each input vector's column currents (µA) through the MVM path at ``MVM:GAIN`` ``gain``
    (set by the caller, ``at_gain``), and how many outputs sat at the ADC's rails."""
    rows = inputs.shape[1]
    codes = np.stack([board.mvm(vector) for vector in inputs]).astype(float)
    clipped = int((np.abs(codes) >= _top_code(board)).sum())
    return (codes - readout.offset) / readout.gain * readout.lsb_ua * rows / gain, clipped


def measure_with_repeats(board: ChipBoard, readout: Readout, inputs: np.ndarray, repeated: np.ndarray, gain: int
                         ) -> tuple[np.ndarray, np.ndarray, int]:
    """Every input's outputs at ``gain``, then the ``repeated`` ones (a mask) measured again,
    for the noise floor; with the outputs that sat at the rails."""
    with at_gain(board, gain):
        measured, clipped = measure_outputs(board, readout, inputs, gain)
        repeat, clipped_again = measure_outputs(board, readout, inputs[repeated], gain)
    return measured, repeat, clipped + clipped_again


def auto_gain(board: ChipBoard, readout: Readout, probes: np.ndarray, headroom: float,
              columns: slice | None = None) -> int:
    """Bound management: the range the matrix's own outputs to ``probes`` (measured at gain 1)
    call for, judged on ``columns`` (default all: the outputs that will be used)."""
    codes = np.stack([board.mvm(vector) for vector in probes]).astype(float)
    used = slice(None) if columns is None else columns
    offset = np.broadcast_to(np.asarray(readout.offset, dtype=float), codes.shape[1:])[used]
    return choose_gain(float(np.abs(codes[:, used] - offset).max()), _top_code(board), probes.shape[1], headroom)


@contextmanager
def at_gain(board: ChipBoard, gain: int) -> Iterator[None]:
    """The MVM path at ``gain``, restored to 1 after: later steps (drift's compensation) map
    MVM codes at the default range."""
    if gain != 1:
        board.set_mvm_gain(gain)
    try:
        yield
    finally:
        if gain != 1:
            board.set_mvm_gain(1)


def check_mvm(board: ChipBoard, readout: Readout, params: MvmParams, intended_us: np.ndarray | None = None,
              defect_error_us: np.ndarray | None = None, wait: Callable[[float], None] = time.sleep) -> MvmResult:
    """Random signed inputs through the MVM path; ``intended_us`` (the targets) adds the
    deployed matrix's figures for the same vectors, ``defect_error_us`` what its defective
    cells cost (``labctl_calibration.accuracy``); ``wait`` lets ``settle_s`` pass first."""
    if params.settle_s > 0:
        wait(params.settle_s)
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
    gain = params.gain if isinstance(params.gain, int) else auto_gain(board, readout, inputs[~test][:8],
                                                                       params.headroom)
    measured, repeat, clipped = measure_with_repeats(board, readout, inputs, test, gain)
    fit = ~test
    slope, intercept = output_scale(expected, measured, fit)
    corrected = (measured - intercept) / slope
    full_scale = float(readout.read_voltage * conductance.sum(axis=0).max())
    intended = None if intended_us is None else volts @ intended_us
    deployed = None if intended_us is None else deployed_accuracy(intended_us, volts, measured, repeat, test,
                                                                  defect_error_us)
    return MvmResult(inputs, expected, measured, corrected, slope, intercept, full_scale, test, repeat, gain,
                     clipped, intended, deployed)
