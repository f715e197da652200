"""Device equations, vectorised over whole arrays; ``sims/README.md`` states them with sources.

Every function is pure: it takes state and per-cell parameter arrays and returns new
arrays, so ``sims.chip`` owns the state and each law can be tested on its own. Units:
conductance µS, amplitude mV, width ns, time s, temperature K, energy eV.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from labctl_sims.presets import DeviceParams

BOLTZMANN_EV = 8.617333262e-5
REFERENCE_WIDTH_NS = 100.0
REFERENCE_TEMPERATURE_K = 300.0


@dataclass(frozen=True)
class CellParams:
    """Each cell's own draw from a preset (device-to-device variation)."""

    g_max: np.ndarray
    g_min: np.ndarray
    set_threshold: np.ndarray
    set_strength: np.ndarray
    reset_threshold: np.ndarray
    reset_strength: np.ndarray
    nu_z: np.ndarray  # the cell's standard-normal position in the ν distribution of its state
    stuck_low: np.ndarray
    stuck_high: np.ndarray

    def __post_init__(self) -> None:
        # derived once: every pulse needs them for every cell
        span = self.g_max - self.g_min
        object.__setattr__(self, "span", span)
        object.__setattr__(self, "inv_span", (1.0 / span).astype(np.float32))
        object.__setattr__(self, "set_rate", (self.set_strength / span).astype(np.float32))
        object.__setattr__(self, "reset_rate", (self.reset_strength / span).astype(np.float32))
        object.__setattr__(self, "stuck", self.stuck_low | self.stuck_high)

    def region(self, index: tuple) -> CellParams:
        """The same parameters for a block of cells (views, derived fields included)."""
        part = object.__new__(CellParams)
        for name, value in vars(self).items():
            object.__setattr__(part, name, value[index])
        return part


def draw_cells(p: DeviceParams, shape: tuple[int, ...], rng: np.random.Generator) -> CellParams:
    """Per-cell parameters (float32: the arrays are large and read on every operation)."""
    u = rng.random(shape)
    stuck_low = u < p.stuck_low_rate
    stuck_high = (u >= p.stuck_low_rate) & (u < p.stuck_low_rate + p.stuck_high_rate)

    def f32(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32)

    def lognormal(median: float) -> np.ndarray:
        return f32(median * rng.lognormal(0.0, p.strength_spread, shape))

    return CellParams(
        g_max=f32(p.g_max_us * (1.0 + p.g_max_spread * rng.standard_normal(shape))),
        g_min=np.full(shape, p.g_min_us, dtype=np.float32),
        set_threshold=f32(p.set_threshold_mv + p.set_threshold_spread_mv * rng.standard_normal(shape)),
        set_strength=lognormal(p.set_strength_us),
        reset_threshold=f32(p.reset_threshold_mv + p.reset_threshold_spread_mv * rng.standard_normal(shape)),
        reset_strength=lognormal(p.reset_strength_us),
        nu_z=f32(rng.standard_normal(shape)),
        stuck_low=stuck_low,
        stuck_high=stuck_high,
    )


def initial_conductance(p: DeviceParams, cells: CellParams, rng: np.random.Generator) -> np.ndarray:
    """As-fabricated state; stuck cells sit at their rail."""
    low, high = p.initial_g_us
    g = rng.uniform(low, high, cells.g_max.shape).astype(np.float32)
    g = np.where(cells.stuck_low, cells.g_min, g)
    return np.where(cells.stuck_high, cells.g_max * np.float32(0.97), g)


# ---- programming ------------------------------------------------------------------


def _polynomial_us(coefficients: tuple[float, ...], g_us: np.ndarray, p: DeviceParams) -> np.ndarray:
    """``Σ c_i·g^i`` (g = G/Gmax), floored at 0 and scaled from the fit's window to the preset's."""
    g = np.clip(g_us / p.g_max_us, 0.0, 1.0)
    value = np.zeros_like(g, dtype=np.float32) + np.float32(coefficients[-1])
    for c in coefficients[-2::-1]:
        value = value * g + c
    return np.maximum(value, 0.0) * (p.g_max_us / p.prog_coeff_g_max_us)


def prog_sigma_us(g_us: np.ndarray, p: DeviceParams) -> np.ndarray:
    """The spread of G about its target after iterative programming (aihwkit's σ_prog for PCM,
    Wan 2022's 1 s spread for RRAM), scaled to the preset's window."""
    return p.prog_noise_scale * _polynomial_us(p.prog_coeff_us, g_us, p)


def relaxation_sigmas_us(g_prog_us: np.ndarray, p: DeviceParams) -> tuple[np.ndarray, np.ndarray]:
    """σ of the fast and of the slow relaxation a programming leaves (fully developed): the
    fast part makes the spread the preset's data show at 1 s, the slow part what it gains
    from there to ``relaxation_reference_s``."""
    early = _polynomial_us(p.prog_coeff_us, g_prog_us, p)
    late = _polynomial_us(p.relaxation_coeff_us, g_prog_us, p)
    s0, s1 = p.relaxation_fast_scale
    fast = early * (s0 + s1 * np.clip(np.asarray(g_prog_us) / p.g_max_us, 0.0, 1.0))
    return fast, p.relaxation_slow_scale * np.sqrt(np.maximum(late * late - early * early, 0.0))


def _saturation(amplitude_mv: np.ndarray, threshold: np.ndarray, scale_mv: float, rate: np.ndarray) -> np.ndarray:
    """``expm1(-drive · rate)``, drive = max(amplitude - threshold, 0) / scale (≤ 0: the step's sign is the caller's)."""
    x = np.subtract(amplitude_mv, threshold)
    np.maximum(x, 0.0, out=x)
    x *= -1.0 / scale_mv
    x *= rate
    return np.expm1(x, out=x)


def _drive_scales_mv(width_ns: float, p: DeviceParams) -> tuple[float, float]:
    """The SET and RESET drive scales at this pulse width (a longer pulse drives harder)."""
    width_factor = (width_ns / REFERENCE_WIDTH_NS) ** p.width_exponent
    return p.set_scale_mv / width_factor, p.reset_scale_mv / width_factor


def saturation_factors(width_ns: float, p: DeviceParams) -> tuple[np.float32, np.float32]:
    """``-1 / scale`` of the SET and RESET drives, as ``_saturation`` multiplies by them."""
    set_scale, reset_scale = _drive_scales_mv(width_ns, p)
    return np.float32(-1.0 / set_scale), np.float32(-1.0 / reset_scale)


def saturations(amplitude_mv: np.ndarray, width_ns: float, p: DeviceParams, cells: CellParams
                ) -> tuple[np.ndarray, np.ndarray]:
    """The SET and RESET saturations of a pulse, ``expm1(-drive · k / span)`` (each ≤ 0)."""
    set_scale, reset_scale = _drive_scales_mv(width_ns, p)
    set_part = _saturation(amplitude_mv, cells.set_threshold, set_scale, cells.set_rate)
    reset_part = _saturation(-amplitude_mv, cells.reset_threshold, reset_scale, cells.reset_rate)
    return set_part, reset_part


def expected_step(g: np.ndarray, amplitude_mv: np.ndarray, width_ns: float, p: DeviceParams,
                  cells: CellParams) -> np.ndarray:
    """Mean conductance change of one pulse (before cycle-to-cycle noise).

    Soft bounds: a SET crystallises a fraction of what is still amorphous, a RESET
    amorphises a fraction of what is crystalline, the fraction saturating in drive
    (amplitude above the cell's threshold, times width ** exponent)::

        ΔG_set   =  span · (1 - fill) · (1 - exp(-drive_set · k_set / span))
        ΔG_reset = -span · fill       · (1 - exp(-drive_reset · k_reset / span))
    """
    fill = np.subtract(g, cells.g_min)
    fill *= cells.inv_span
    np.clip(fill, 0.0, 1.0, out=fill)
    set_part, reset_part = saturations(amplitude_mv, width_ns, p, cells)
    set_part *= 1.0 - fill  # (1 - fill) · expm1(...) ≤ 0
    reset_part *= fill
    reset_part -= set_part  # = fill·expm1_r - (1-fill)·expm1_s
    reset_part *= cells.span
    return reset_part


def switches(amplitude_mv: np.ndarray, cells: CellParams) -> np.ndarray:
    """Pulses strong enough to change a (working) cell at all."""
    return ((amplitude_mv > cells.set_threshold) | (-amplitude_mv > cells.reset_threshold)) & ~cells.stuck


def apply_pulses(g: np.ndarray, amplitude_mv: np.ndarray, width_ns: float, p: DeviceParams,
                 cells: CellParams, normal: np.ndarray) -> np.ndarray:
    """Conductance right after one pulse per cell; ``normal`` holds one N(0,1) draw per cell.

    Cycle-to-cycle noise is Gaussian with two parts in quadrature: one proportional to
    the step (variance ∝ |ΔG|, scaled so one step from empty to G carries σ_prog(G)),
    and a floor of ``prog_floor · σ_prog(G)`` that every switching pulse carries however
    small it is. The floor is what stops program-and-verify from converging below the
    spread measured on hardware; ``sims/README.md`` says how it was fitted.
    """
    step = expected_step(g, amplitude_mv, width_ns, p, cells)
    after = g + step
    level = np.maximum(g, after)
    np.maximum(level, p.g_min_us, out=level)
    sigma = np.abs(step)
    sigma /= level
    sigma += p.prog_floor**2
    np.sqrt(sigma, out=sigma)
    sigma *= prog_sigma_us(level, p)
    if p.reset_noise_factor != 1.0:
        sigma *= 1.0 + (p.reset_noise_factor - 1.0) * (step < 0)
    sigma *= normal
    after += sigma
    melted = -amplitude_mv >= p.reset_melt_mv
    if melted.any():
        np.copyto(after, cells.g_min, where=melted)
    np.clip(after, cells.g_min, cells.g_max, out=after)
    np.copyto(after, g, where=~switches(amplitude_mv, cells))
    return after


# ---- after programming ------------------------------------------------------------


def _log_relative(g_prog_us: np.ndarray, p: DeviceParams, floor: float) -> np.ndarray:
    """ln(|G| / Gmax), floored; always an ndarray (0-d too) so callers may work in place."""
    return np.array(np.log(np.maximum(np.abs(g_prog_us) * (1.0 / p.g_max_us), floor)))


def _clipped_linear(log_g: np.ndarray, law: tuple[float, float, float, float]) -> np.ndarray:
    a, b, low, high = law
    out = np.array(log_g * a)
    out += b
    return np.clip(out, low, high, out=out)


def nu_mean_std(g_prog_us: np.ndarray, p: DeviceParams) -> tuple[np.ndarray, np.ndarray]:
    """aihwkit's state-dependent drift exponent distribution: clipped linear laws in ln(G/Gmax)."""
    log_g = _log_relative(g_prog_us, p, 1e-7)
    return _clipped_linear(log_g, p.nu_mean_law), _clipped_linear(log_g, p.nu_std_law)


def nu_rank_after_programming(fabricated_z: np.ndarray, normal: np.ndarray, p: DeviceParams) -> np.ndarray:
    """A cell's place in the ν distribution for this programming: correlated with, not equal
    to, its place last time (ν varies from one programming of a cell to the next)."""
    rho = p.nu_cycle_correlation
    out = np.multiply(normal, np.float32(np.sqrt(1.0 - rho * rho)))
    out += np.float32(rho) * fabricated_z
    return out


def drift_exponent(g_prog_us: np.ndarray, nu_z: np.ndarray, p: DeviceParams) -> np.ndarray:
    mean, std = nu_mean_std(g_prog_us, p)
    std *= nu_z
    std += mean
    np.abs(std, out=std)
    std *= p.drift_scale
    return std


def drift_factor(t_eff_s: np.ndarray, nu: np.ndarray, t0_s: float, out: np.ndarray | None = None) -> np.ndarray:
    """``((t + t0) / t0) ** -ν``: aihwkit's power law, with t counted from the end of
    programming, so a cell drifts from the first microsecond (slowly at first: 3.4 %
    at ν = 0.05 by t = t0, then the familiar power law).

    ``out`` (which may be ``t_eff_s`` itself) avoids allocating on the read path.
    """
    out = np.add(t_eff_s, t0_s, out=out)
    out *= 1.0 / t0_s
    np.log(out, out=out)
    out *= nu
    out *= -1.0
    return np.exp(out, out=out)


def drift_acceleration(temperature_k: float, p: DeviceParams) -> float:
    """How much faster than at 300 K the drift clock runs (Arrhenius)."""
    return float(np.exp(p.drift_activation_ev / BOLTZMANN_EV * (1 / REFERENCE_TEMPERATURE_K - 1 / temperature_k)))


def read_noise_q(g_prog_us: np.ndarray, p: DeviceParams) -> np.ndarray:
    """aihwkit's relative 1/f noise amplitude ``q_s = min(a / (G/Gmax)**b, cap)``."""
    a, b, cap = p.read_noise_law
    q = _log_relative(g_prog_us, p, 1e-3)
    q *= -b
    np.exp(q, out=q)
    q *= a
    np.minimum(q, cap, out=q)
    q *= p.read_noise_scale
    return q


def conduction_activation(g_prog_us: np.ndarray, p: DeviceParams) -> np.ndarray:
    """Activation energy of conduction: amorphous (empty) cells are the most thermally activated."""
    empty, full = p.conduction_activation_ev
    fill = np.clip(g_prog_us / p.g_max_us, 0.0, 1.0)
    return empty + (full - empty) * fill


def conduction_factor(activation_ev: np.ndarray, temperature_k: float, out: np.ndarray | None = None) -> np.ndarray:
    """Thermally activated conduction relative to 300 K."""
    inverse = 1 / temperature_k - 1 / REFERENCE_TEMPERATURE_K
    out = np.multiply(activation_ev, -inverse / BOLTZMANN_EV, out=out)
    return np.exp(out, out=out)


def relaxation(fast_us: np.ndarray, slow_us: np.ndarray, since_programming_s: np.ndarray, p: DeviceParams
               ) -> np.ndarray:
    """RRAM relaxation: a fast offset that settles within a second, and a slow one whose spread
    grows with the logarithm of time, reaching its amplitude at ``relaxation_reference_s``
    (Wan et al. 2022: the spread after write-verify widens within a second, then from 1 s to
    a day and on to two, at a slowing rate)."""
    since = np.maximum(since_programming_s, 0.0)
    profile = np.log1p(since / p.relaxation_tau_s) / np.log1p(p.relaxation_reference_s / p.relaxation_tau_s)
    return fast_us * -np.expm1(-since / p.relaxation_fast_tau_s) + slow_us * np.sqrt(profile)


# ---- periphery --------------------------------------------------------------------


@lru_cache(maxsize=8)
def _wire_weights(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """How many wire segments each cell's current shares with each other cell's, as matrices.

    Row wire (drivers at column 0): the drop at column j is ``Σ_k≤j Σ_m≥k I_m``, which is
    ``Σ_m I_m · (min(j, m) + 1)``. Column wire (ADC below the last row): the rise at row i
    is ``Σ_k≥i Σ_m≤k I_m = Σ_m I_m · (rows − max(i, m))``. As matrices, both are one BLAS
    product instead of two cumulative sums with strided reversals.
    """
    j = np.arange(cols)
    along_row = (np.minimum.outer(j, j) + 1).astype(np.float32)  # [m, j]
    i = np.arange(rows)
    along_column = (rows - np.maximum.outer(i, i)).astype(np.float32)  # [i, m]
    return along_row, along_column


def ir_drop_voltages(v_rows: np.ndarray, g_us: np.ndarray, wire_ohm: float) -> np.ndarray:
    """Cell voltages with first-order IR drop (drivers at column 0, ADCs below the last row).

    Each row wire carries, through segment k, the current of its cells at columns ≥ k;
    each column wire carries, through segment k, the current of its cells at rows ≤ k.
    One pass of this correction is accurate while the drops are small against the inputs.
    """
    if wire_ohm == 0.0:
        return np.broadcast_to(v_rows[:, None], g_us.shape)
    current_ua = (v_rows[:, None] * g_us).astype(np.float32)
    along_row, along_column = _wire_weights(*g_us.shape)
    drop = current_ua @ along_row
    drop += along_column @ current_ua
    drop *= np.float32(-wire_ohm * 1e-6)
    drop += v_rows[:, None].astype(np.float32)
    return drop


def ir_drop_read_voltages(v_read: float, g_us: np.ndarray, row_numbers: np.ndarray, rows: int,
                          wire_ohm: float) -> np.ndarray:
    """Cell voltages of a row read with first-order IR drop (the same wiring as an MVM).

    A read drives one row at a time with every column converting at once, so the row wire
    carries the whole row's current and each column wire carries its one cell's current
    through the segments from that row down to the ADC. Far columns of a row full of
    high-conductance cells therefore read low, by an amount that depends on the other
    cells of the row: a systematic, state-dependent read error no per-column trim removes.
    """
    current_ua = g_us * np.float32(v_read)
    along_row, _ = _wire_weights(rows, g_us.shape[1])
    drop = current_ua @ along_row
    segments_below = (rows - np.asarray(row_numbers)).astype(np.float32)[:, None]
    drop += current_ua * segments_below
    drop *= np.float32(-wire_ohm * 1e-6)
    drop += np.float32(v_read)
    return drop
