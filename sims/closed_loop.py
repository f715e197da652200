"""The closed loop of a board listing ``IMVM``: op-amps around two arrays solve A·x = −b in one step.

The circuit is Sun et al.'s (PNAS 116, 4123, 2019) as the Politecnico di Milano SRAM chip
builds it with two arrays (Mannocci et al., Nature Electronics 2026). Row ``i`` is an
op-amp's virtual-ground input, and an input current ``b_i`` is injected into it. The
op-amp's output ``x_i`` drives column ``i`` of array 0 directly and column ``i`` of array 1
through an inverter, so ``A = G0 − G1``. Each row node collects
``D_i = Σ_j (G0_ij + G1_ij)`` of conductance in all. With an op-amp of finite gain ``a_i``
and input offset ``e_i``, its input sits at ``v_i = e_i − x_i / a_i``, and Kirchhoff's current
law at the row node gives

    (A + diag(D / a)) · x = −b + D ∘ e                                         (1)

which is ``A·x = −b`` once ``a → ∞`` and ``e → 0``. Units are µS, V and µA.

Dynamics: each op-amp has a single pole, gain-bandwidth ``ω_t = 2π·GBW``. Linearising
the loop gives ``dx/dt = −ω_t · D⁻¹ · (M·x + b − D ∘ e)`` with ``M`` the matrix of (1).
The loop settles only if every eigenvalue ``λ`` of ``D⁻¹M`` has a positive real part
(Sun et al.'s stability condition, with the normalisation the row nodes impose). It then
settles as ``exp(−ω_t·min Re λ·t)``, so reaching half an output code takes

    t_settle = ln(2·(2^(bits−1) − 1)) / (ω_t · min Re λ)                       (2)

A loop slower than the board's timeout (unstable or singular included) never settles as a
whole. Then the lines whose own feedback is too weak, ``M_kk / D_k`` below the rate (2)
needs, run to the rail their drive points at (``sign`` of their right-hand side, noise
included) and stay there. If the other lines settle with those held, they do. Otherwise
every output is read at a rail. An output that (1) puts beyond a rail saturates there, the
furthest first, and the other outputs settle with it held. What the arrays present is the conductance a read would see at that moment, read
noise included. The settled outputs carry the op-amps' output noise. The output ADC has
its own gain and offset per column, and the input DACs a gain per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl_sims.presets import DeviceParams

DAC_FULL_CODE = 127
RAIL_OVER_FULL_SCALE = 1.05  # the op-amps' rails sit just beyond the ADC's range, so a railed output reads full code


@dataclass(frozen=True)
class Stability:
    rate: float  # slowest mode of the lines that settle, in units of ω_t (below the needed rate: none do)
    runaway: np.ndarray  # lines that run to a rail on their own and stay there


@dataclass(frozen=True)
class Settled:
    volts: np.ndarray  # each op-amp's output before the ADC
    settle_s: float  # how long the board waited for it
    settled: bool  # False: unstable, singular or too slow, and the outputs sit at the rails


class ClosedLoop:
    """The op-amps, DACs and ADCs of one closed loop over ``n`` rows, drawn at fabrication."""

    def __init__(self, p: DeviceParams, n: int, rng: np.random.Generator) -> None:
        self.p = p
        self.n = n
        self.open_loop_gain = p.loop_open_loop_gain * np.exp(p.loop_open_loop_gain_spread * rng.standard_normal(n))
        self.offset_v = 1e-3 * p.loop_offset_mv * rng.standard_normal(n)
        self.input_gain = 1.0 + p.loop_input_gain_spread * rng.standard_normal(n)
        self.output_gain = 1.0 + p.loop_output_gain_spread * rng.standard_normal(n)
        self.output_offset_codes = p.loop_output_offset_lsb * rng.standard_normal(n)
        self.full_code = 2 ** (p.adc_bits - 1) - 1

    @property
    def imax_ua(self) -> float:
        return self.p.loop_imax_ua

    @property
    def vmax_v(self) -> float:
        return self.p.loop_vmax_v

    def input_currents_ua(self, codes: np.ndarray) -> np.ndarray:
        return codes.astype(np.float64) * (self.imax_ua / DAC_FULL_CODE) * self.input_gain

    def settle(self, g_pos: np.ndarray, g_neg: np.ndarray, current_ua: np.ndarray,
               rng: np.random.Generator, stability: Stability | None = None) -> Settled:
        """The outputs the loop settles at for these conductances (µS) and input currents, per (1)
        and (2). ``stability`` is the loop's when the caller knows it (it changes only when the
        arrays are programmed; read noise moves it by far less than it moves the outputs)."""
        p = self.p
        a = g_pos.astype(np.float64) - g_neg
        d = (g_pos.astype(np.float64) + g_neg).sum(axis=1)
        m = a + np.diag(d / self.open_loop_gain)
        rhs = -current_ua + d * self.offset_v
        s = self.stability(g_pos, g_neg) if stability is None else stability
        if s.rate < self.needed_rate:
            return self._railed(rng, p.loop_timeout_s)
        settle_s = np.log(2.0 * self.full_code) / (self.omega_t * s.rate)
        rail = RAIL_OVER_FULL_SCALE * self.vmax_v
        held = np.zeros(self.n)
        if s.runaway.any():  # each such output heads for the rail its drive points at, and stays there
            noise = 1e-3 * p.loop_output_noise_mv * d * rng.standard_normal(self.n)
            held = np.where(s.runaway, np.sign(rhs + noise) * rail, 0.0)
        try:
            x = self._saturating_solve(m, rhs, s.runaway, held)
        except np.linalg.LinAlgError:
            return self._railed(rng, p.loop_timeout_s)
        x += 1e-3 * p.loop_output_noise_mv * rng.standard_normal(self.n)
        return Settled(np.clip(x, -rail, rail), float(settle_s), True)

    @property
    def omega_t(self) -> float:
        return 2 * np.pi * self.p.loop_gbw_hz

    @property
    def needed_rate(self) -> float:
        """The slowest mode that still settles within the board's timeout, per (2)."""
        return np.log(2.0 * self.full_code) / (self.omega_t * self.p.loop_timeout_s)

    def stability(self, g_pos: np.ndarray, g_neg: np.ndarray) -> Stability:
        """How the loop settles on these arrays. When the whole loop cannot, the lines whose own
        feedback ``M_kk / D_k`` is too weak or of the wrong sign (a stuck cell on the diagonal,
        say) run away to a rail on their own. The rest may still settle with them held there."""
        d = (g_pos.astype(np.float64) + g_neg).sum(axis=1)
        m = g_pos.astype(np.float64) - g_neg + np.diag(d / self.open_loop_gain)
        none = np.zeros(self.n, dtype=bool)
        whole = self.slowest_rate(m, d)
        if whole >= self.needed_rate:
            return Stability(whole, none)
        runaway = np.diag(m) / np.maximum(d, 1e-30) < self.needed_rate
        if not runaway.any() or runaway.all():
            return Stability(whole, none)
        rest = ~runaway
        rest_rate = self.slowest_rate(m[np.ix_(rest, rest)], d[rest])
        return Stability(rest_rate, runaway) if rest_rate >= self.needed_rate else Stability(whole, none)

    @staticmethod
    def slowest_rate(m: np.ndarray, d: np.ndarray) -> float:
        """min Re λ(D⁻¹M): the loop's slowest mode in units of ω_t (≤ 0: it never settles)."""
        if not np.all(d > 0):
            return 0.0
        eigenvalues = np.linalg.eigvals(m / d[:, None])
        return float(eigenvalues.real.min()) if np.all(np.isfinite(eigenvalues)) else 0.0

    def _saturating_solve(self, m: np.ndarray, rhs: np.ndarray, held: np.ndarray | None = None,
                          held_at: np.ndarray | None = None) -> np.ndarray:
        """(1), with the ``held`` outputs at ``held_at`` and every other output that would pass a
        rail held at it, one at a time from the furthest, the rest settling around them."""
        rail = RAIL_OVER_FULL_SCALE * self.vmax_v
        held = np.zeros(self.n, dtype=bool) if held is None else held.copy()
        x = np.zeros(self.n) if held_at is None else held_at.copy()
        for _ in range(self.n + 1):
            free = ~held
            if free.any():
                x[free] = np.linalg.solve(m[np.ix_(free, free)], rhs[free] - m[np.ix_(free, held)] @ x[held])
            beyond = ~held & (np.abs(x) > rail)
            if not beyond.any():
                break
            # the furthest output saturates first; the others are re-solved with it held, since
            # they may have passed their rails only through it
            worst = int(np.argmax(np.where(beyond, np.abs(x), 0.0)))
            held[worst] = True
            x[worst] = np.sign(x[worst]) * rail
        return x

    def _railed(self, rng: np.random.Generator, waited_s: float) -> Settled:
        signs = np.where(rng.standard_normal(self.n) >= 0, 1.0, -1.0)
        return Settled(signs * RAIL_OVER_FULL_SCALE * self.vmax_v, waited_s, False)

    def output_codes(self, volts: np.ndarray) -> np.ndarray:
        """The output ADC: ±VMAX ↦ ±full code through each column's gain and offset, clipped."""
        ideal = volts / self.vmax_v * self.full_code
        codes = np.rint(self.output_gain * ideal + self.output_offset_codes)
        return np.clip(codes, -self.full_code, self.full_code).astype(np.int16)
