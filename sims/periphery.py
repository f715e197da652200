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
* **slow wander** of gain and offset with time, so a calibration ages over hours: per
  column a sum of ``WANDER_TERMS`` sinusoids with random phases and periods log-uniform
  over ``[τ/4, 4τ]`` (``τ = adc_wander_tau_s``), each of amplitude ``σ·sqrt(2/K)`` (a
  stationary process of spread σ). It is a function of time alone, so looking at the
  trims (ground truth) changes nothing a later read sees;
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
WANDER_TERMS = 6


class Periphery:
    """Per-column converters of every array: trims, INL, temperature and time dependence."""

    def __init__(self, p: DeviceParams, gain0: np.ndarray, offset0: np.ndarray, rng: np.random.Generator) -> None:
        """``gain0``/``offset0`` are the trims, (arrays, cols); ``rng`` draws everything else
        (a stream of its own, so adding to the periphery changes no cell of a chip)."""
        columns = gain0.shape
        self.bits = p.adc_bits
        self.full_scale_ua = p.adc_full_scale_ua
        self.gain0 = gain0.astype(np.float64)
        self.offset0 = offset0.astype(np.float64)
        amplitude = p.adc_inl_lsb * rng.uniform(0.5, 1.0, columns)
        phase = rng.uniform(0.0, 2 * np.pi, columns)
        self.inl_bow = amplitude * np.cos(phase)
        self.inl_s = amplitude * np.sin(phase) * S_SHAPE_PEAK
        self.gain_tempco = p.adc_gain_tempco_per_k + p.adc_gain_tempco_spread * rng.standard_normal(columns)
        self.offset_tempco = p.adc_offset_tempco_lsb_per_k * rng.standard_normal(columns)
        self.mvm_gain_ratio = 1.0 + p.mvm_gain_mismatch * rng.standard_normal(columns)
        self.mvm_offset_delta = p.mvm_offset_mismatch_lsb * rng.standard_normal(columns)
        # wander: (gain, offset) x terms x columns; periods log-uniform over [τ/4, 4τ]
        shape = (2, WANDER_TERMS, *columns)
        tau = max(p.adc_wander_tau_s, 1e-9)
        self._wander_omega = 2 * np.pi / np.exp(rng.uniform(np.log(tau / 4), np.log(4 * tau), shape))
        self._wander_phase = rng.uniform(0.0, 2 * np.pi, shape)
        sigma = np.array([p.adc_gain_wander, p.adc_offset_wander_lsb]) * np.sqrt(2.0 / WANDER_TERMS)
        self._wander_amplitude = sigma.reshape(2, 1, 1, 1) * np.ones(shape)

    @property
    def lsb_ua(self) -> float:
        return self.full_scale_ua / 2 ** (self.bits - 1)

    def wander(self, which: int, array: int, now_s: float) -> np.ndarray:
        """Gain (``which`` 0, relative) or offset (1, codes) wander of each column at ``now_s``."""
        terms = np.sin(self._wander_omega[which, :, array] * now_s + self._wander_phase[which, :, array])
        return (self._wander_amplitude[which, :, array] * terms).sum(axis=0)

    def gain(self, array: int, temperature_k: float, now_s: float, mvm: bool = False) -> np.ndarray:
        """Each column's gain now, in codes per LSB of current."""
        g = self.gain0[array] * (1.0 + self.gain_tempco[array] * (temperature_k - REFERENCE_TEMPERATURE_K))
        g = g * (1.0 + self.wander(0, array, now_s))
        return g * self.mvm_gain_ratio[array] if mvm else g

    def offset(self, array: int, temperature_k: float, now_s: float, mvm: bool = False) -> np.ndarray:
        """Each column's offset now, in codes."""
        o = self.offset0[array] + self.offset_tempco[array] * (temperature_k - REFERENCE_TEMPERATURE_K)
        o = o + self.wander(1, array, now_s)
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
