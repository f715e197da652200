"""The board's read-out periphery: per-column ADCs as real ones are, and the MVM path in front of them.

An ideal periphery (trims fixed at fabrication, a perfectly linear transfer, the MVM
path sharing the read path's gain and offset exactly) would let a read-out calibration
taken once hold forever and transfer exactly from reads to MVMs. Real converters do
neither, so each column here has:

* **trims** drawn at fabrication: gain ``1 + σ_gain·z`` and offset ``σ_offset·z`` codes;
* **integral non-linearity**: a smooth, per-column mix of a bow and an S-shape in the code,
  ``INL(u) = A_c · (cos φ_c·(1 − u²) + sin φ_c·κ·(u − u³))`` with ``u`` the ideal code over
  full scale, ``A_c ~ U(½, 1)·inl``, ``φ_c ~ U(0, 2π)`` and ``κ = 3√3/2`` (each shape peaks
  at 1; a mix at up to 1.23): zero at both ends of the range, as after an end-point trim,
  so a straight line fitted over part of the range cannot remove it;
* **temperature coefficients**: gain ``× (1 + α_c·(T − 300 K))``, ``α_c ~ N(α, σ_α)``, and
  offset ``+ β_c·(T − 300 K)`` codes, ``β_c ~ N(0, σ_β)``;
* **slow wander** of gain and offset with time: one Ornstein-Uhlenbeck process each per
  column (time constant ``wander_tau``), so a calibration ages over hours;
* **an MVM path of its own**: the MVM front end (row DACs, the column integrator that
  scales by ``MVM:GAIN / rows``) has its own gain and offset error, close to but not equal
  to the read path's, ``gain_mvm = gain·(1 + σ_m·z)``, ``offset_mvm = offset + σ_mo·z``.

``sims/README.md`` gives the values and where they come from.
"""

from __future__ import annotations

import numpy as np

from labctl_sims.presets import DeviceParams

REFERENCE_TEMPERATURE_K = 300.0
S_SHAPE_PEAK = 3.0 * np.sqrt(3.0) / 2.0  # 1 / max(u - u³) on [-1, 1]
WANDER_UPDATE_FRACTION = 0.01  # the wander is advanced once this fraction of its τ has passed


class Periphery:
    """Per-column converters of every array: trims, INL, temperature and time dependence."""

    def __init__(self, p: DeviceParams, gain0: np.ndarray, offset0: np.ndarray, rng: np.random.Generator) -> None:
        """``gain0``/``offset0`` are the trims, (arrays, cols); ``rng`` draws everything else
        (a stream of its own, so adding to the periphery changes no cell of a chip)."""
        columns = gain0.shape
        fab = run = rng
        self.bits = p.adc_bits
        self.full_scale_ua = p.adc_full_scale_ua
        self.gain0 = gain0.astype(np.float64)
        self.offset0 = offset0.astype(np.float64)
        amplitude = p.adc_inl_lsb * fab.uniform(0.5, 1.0, columns)
        phase = fab.uniform(0.0, 2 * np.pi, columns)
        self.inl_bow = amplitude * np.cos(phase)
        self.inl_s = amplitude * np.sin(phase) * S_SHAPE_PEAK
        self.gain_tempco = p.adc_gain_tempco_per_k + p.adc_gain_tempco_spread * fab.standard_normal(columns)
        self.offset_tempco = p.adc_offset_tempco_lsb_per_k * fab.standard_normal(columns)
        self.mvm_gain_ratio = 1.0 + p.mvm_gain_mismatch * fab.standard_normal(columns)
        self.mvm_offset_delta = p.mvm_offset_mismatch_lsb * fab.standard_normal(columns)
        self._run = run
        self._wander_tau = p.adc_wander_tau_s
        self._wander_sigma = np.array([p.adc_gain_wander, p.adc_offset_wander_lsb])
        self._wander = np.zeros((2, *columns))  # gain (relative), offset (codes); starts at its trim
        self._wander_at = 0.0

    @property
    def lsb_ua(self) -> float:
        return self.full_scale_ua / 2 ** (self.bits - 1)

    def _advance(self, now_s: float) -> None:
        elapsed = now_s - self._wander_at
        if not self._wander_sigma.any() or elapsed < WANDER_UPDATE_FRACTION * self._wander_tau:
            return
        keep = np.exp(-elapsed / self._wander_tau)
        kick = self._run.standard_normal(self._wander.shape) * np.sqrt(1.0 - keep * keep)
        self._wander = keep * self._wander + kick * self._wander_sigma[:, None, None]
        self._wander_at = now_s

    def gain(self, array: int, temperature_k: float, now_s: float, mvm: bool = False) -> np.ndarray:
        """Each column's gain now, in codes per LSB of current."""
        self._advance(now_s)
        g = self.gain0[array] * (1.0 + self.gain_tempco[array] * (temperature_k - REFERENCE_TEMPERATURE_K))
        g = g * (1.0 + self._wander[0, array])
        return g * self.mvm_gain_ratio[array] if mvm else g

    def offset(self, array: int, temperature_k: float, now_s: float, mvm: bool = False) -> np.ndarray:
        """Each column's offset now, in codes."""
        self._advance(now_s)
        o = self.offset0[array] + self.offset_tempco[array] * (temperature_k - REFERENCE_TEMPERATURE_K)
        o = o + self._wander[1, array]
        return o + self.mvm_offset_delta[array] if mvm else o

    def inl(self, array: int, ideal_codes: np.ndarray) -> np.ndarray:
        """The integral non-linearity, in codes, at the given ideal (unrounded) codes:
        ``bow·(1 − u²) + s·(u − u³) = bow + u·(s − u·(bow + s·u))``, in the codes' precision."""
        dtype = np.result_type(ideal_codes, np.float32)
        bow, s = self.inl_bow[array].astype(dtype), self.inl_s[array].astype(dtype)
        u = np.multiply(ideal_codes, dtype.type(1.0 / 2 ** (self.bits - 1)), dtype=dtype)
        np.clip(u, -1.0, 1.0, out=u)
        out = u * s
        out += bow
        out *= u
        np.subtract(s, out, out=out)
        out *= u
        out += bow
        return out

    def convert(self, array: int, current_ua: np.ndarray, temperature_k: float, now_s: float,
                mvm: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """ADC codes of the given column currents: ``round(gain·I/LSB + offset + INL)``, saturated."""
        gain = self.gain(array, temperature_k, now_s, mvm).astype(np.float32)
        offset = self.offset(array, temperature_k, now_s, mvm).astype(np.float32)
        codes = np.multiply(current_ua, np.float32(1 / self.lsb_ua), out=out)
        codes *= gain
        codes += offset
        if self.inl_bow.any() or self.inl_s.any():
            codes += self.inl(array, codes).astype(np.float32)
        np.rint(codes, out=codes)
        top = 2 ** (self.bits - 1)
        np.clip(codes, -top, top - 1, out=codes)
        return codes.astype(np.int16)
