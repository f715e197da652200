"""The array-wide pulse's element-wise work as compiled loops (numba), one loop per stage.

Why: a pulse is some seventy numpy passes over the cells it addresses, most of them a
multiply or a masked copy that costs more in memory traffic and call overhead than in
arithmetic. A dozen loops do that work, each one pass. The transcendental functions (the
saturation's ``expm1``, the ``log`` and ``exp`` of drift and of the state-dependent laws,
relaxation's ``log1p`` and ``expm1``) stay in numpy, whose vectorised implementations are some twenty times faster than the
scalar ones a compiled loop calls (and differ from them in the last bit), so a pulse is:
``pulse_drives`` → numpy ``expm1`` (one pass where numpy's path takes two) →
``drift_log_argument`` → numpy ``log`` → ``drift_exponent`` → numpy ``exp`` →
``program_cells`` → numpy ``log`` → ``store_programmed`` → numpy ``exp`` →
``store_noise_amplitude``, plus ``restart_flicker``; ``standard_normal_into`` renews the
noise pool. A relaxing chip (RRAM) starts from ``relaxation_arguments`` → numpy ``log1p``
and ``expm1`` → ``relaxed_conductance`` instead of the drift loops, and ends with
``count_programmings`` → ``store_relaxation``.

The equations are ``sims.physics``'s, step for step in the same float32 operations and
the same order, and they draw the same noise in the same order, so the twin's state and
replies are the same to the last bit whether numba is installed or not (``LABCTL_TWIN_KERNELS
=numpy`` turns these loops off); ``tests/test_fused_pulse.py`` holds them equal to the numpy
path. Imported only through ``sims.kernels``, so a twin without numba never loads it.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.core.errors import TypingError
from numba.extending import overload


def _cells(array: np.ndarray) -> np.ndarray:
    """A C-contiguous block of cells as one dimension (a view), inside the loops only."""
    raise NotImplementedError("compiled loops only")


@overload(_cells)
def _cells_of(array):
    """One loop over all the cells instead of one a row: LLVM vectorises an inner loop only
    past a few dozen iterations and checks its arrays for overlap on every entry, so rows of
    64 cells ran as scalar code, six times slower. A non-contiguous array is refused when the
    loop is compiled (a flattened copy would take the writes)."""
    if not isinstance(array, types.Array) or array.layout != "C":
        raise TypingError(f"the pulse loops take C-contiguous blocks of whole rows, not {array}")
    return lambda array: array.reshape(array.size)


_JIT = {"nogil": True, "cache": True, "fastmath": False, "boundscheck": False, "error_model": "numpy"}
# Loop bodies are branch-free (every cell computed, the result selected), so that LLVM turns
# each inner loop into SIMD code; a branch per cell made the loops slower than numpy's passes.


@numba.njit(**_JIT)
def pulse_drives(amplitude: np.ndarray, set_threshold: np.ndarray, reset_threshold: np.ndarray,
                 set_rate: np.ndarray, reset_rate: np.ndarray, stuck: np.ndarray, set_factor: np.float32,
                 reset_factor: np.float32, drive: np.ndarray, switched: np.ndarray) -> int:
    """``physics.saturations`` up to their expm1 (which numpy then takes in place) and
    ``physics.switches``: the argument ``-max(±a - threshold, 0) / scale · rate``, which cells
    the pulse moves, and how many. ``set_factor``, ``reset_factor``: ``-1 / scale`` each.

    One argument a cell, not two: with both thresholds positive (``usable``), a pulse of
    ``a ≥ 0`` has no RESET drive and one of ``a < 0`` no SET drive, each exactly ``-0.0``,
    which ``program_cells`` puts back, so one expm1 pass does where numpy takes two."""
    amplitude = _cells(amplitude)
    set_threshold = _cells(set_threshold)
    set_rate = _cells(set_rate)
    reset_threshold = _cells(reset_threshold)
    reset_rate = _cells(reset_rate)
    drive = _cells(drive)
    stuck = _cells(stuck)
    switched = _cells(switched)
    n = amplitude.size
    zero = np.float32(0.0)
    moved = 0
    for k in range(n):
        a = np.float32(amplitude[k])  # int16 from the board, as numpy's astype
        set_drive = max(a - set_threshold[k], zero) * set_factor * set_rate[k]
        reset_drive = max(-a - reset_threshold[k], zero) * reset_factor * reset_rate[k]
        drive[k] = set_drive if a >= zero else reset_drive
        sw = ((a > set_threshold[k]) | (-a > reset_threshold[k])) & ~stuck[k]
        switched[k] = sw
        moved += sw
    return moved


def usable(set_threshold: np.ndarray, reset_threshold: np.ndarray) -> bool:
    """Whether these loops give the numpy path's chip: every threshold positive (on every
    preset by hundreds of σ; a chip with one that is not takes the numpy path)."""
    return bool((set_threshold > 0).all() and (reset_threshold > 0).all())


@numba.njit(**_JIT)
def drift_log_argument(drift_clock_s: float, drift_prog: np.ndarray, t0: np.float32, inv_t0: np.float32,
                       out: np.ndarray) -> None:
    """``physics.drift_factor``'s argument of the log, ``(float32(t) + t0) · (1 / t0)`` with
    ``t`` the drift clock since programming (numpy subtracts in float64, then rounds)."""
    out = _cells(out)
    drift_prog = _cells(drift_prog)
    n = out.size
    for k in range(n):
        out[k] = (np.float32(drift_clock_s - drift_prog[k]) + t0) * inv_t0


@numba.njit(**_JIT)
def drift_exponent(log_argument: np.ndarray, nu: np.ndarray, out: np.ndarray) -> None:
    """``-(ln(...) · ν)``, the exponent numpy's exp turns into the drift factor."""
    out = _cells(out)
    log_argument = _cells(log_argument)
    nu = _cells(nu)
    n = out.size
    minus_one = np.float32(-1.0)
    for k in range(n):
        out[k] = log_argument[k] * nu[k] * minus_one


@numba.njit(**_JIT)
def program_cells(g_prog: np.ndarray, drift: np.ndarray, switched: np.ndarray, saturation: np.ndarray,
                  normal: np.ndarray, amplitude: np.ndarray, g_min: np.ndarray, g_max: np.ndarray, span: np.ndarray,
                  inv_span: np.ndarray, pulses: np.ndarray, window_top: np.ndarray, consts: np.ndarray,
                  wide: np.ndarray, prog_coeff: np.ndarray, g_new: np.ndarray, log_argument: np.ndarray) -> None:
    """``expected_step`` (after the saturations' expm1) and ``apply_pulses`` for the cells
    ``pulse_drives`` found switching, then wear; writes the new state and ``|G|/Gmax`` floored
    for the log. The conductance before the pulse is ``max(g_prog · drift, 0)``, the end of
    ``ChipModel._conductance`` (``drift``: the factor ``drift_log_argument`` and numpy made,
    or ones where the conductance came whole from ``_conductance``).

    ``consts`` (float32): floor², level floor (µS), Gmax of the σ polynomial's g, the polynomial's
    window scale, the preset's noise scale, melt amplitude (mV), 1/Gmax, log floor. ``wide``
    (float64, where numpy computes in float64): window loss per pulse (0: no wear) and most loss
    (numpy scales the int32 count in float64), the RESET noise factor as ``1 + (factor - 1)``
    (numpy multiplies by a float64 array of it). ``prog_coeff``: σ_prog's polynomial, lowest
    order first, padded with zeros to five terms (Horner's rule gives the same float32 result).
    """
    floor_sq, level_floor, poly_g_max, window_scale, noise_scale, melt_mv = consts[0:6]
    inv_g_max, log_floor = consts[6], consts[7]
    c0, c1, c2, c3, c4 = prog_coeff[0], prog_coeff[1], prog_coeff[2], prog_coeff[3], prog_coeff[4]
    loss_per_pulse, loss_max, reset_factor = wide[0], wide[1], wide[2]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    negative_zero = np.float32(-0.0)
    amplitude = _cells(amplitude)
    switched = _cells(switched)
    g_prog = _cells(g_prog)
    drift = _cells(drift)
    g_min = _cells(g_min)
    inv_span = _cells(inv_span)
    saturation = _cells(saturation)
    span = _cells(span)
    normal = _cells(normal)
    g_max = _cells(g_max)
    pulses = _cells(pulses)
    window_top = _cells(window_top)
    g_new = _cells(g_new)
    log_argument = _cells(log_argument)
    n = amplitude.size
    for k in range(n):
        a = np.float32(amplitude[k])  # int16 from the board, as numpy's astype
        sw = switched[k]
        g0 = g_prog[k] * drift[k]
        g0 = g0 if g0 >= zero else zero  # numpy's maximum
        fill = min(max((g0 - g_min[k]) * inv_span[k], zero), one)
        # physics.expected_step's (reset · fill - set · (1 - fill)), the absent one being -0.0
        sat = saturation[k]
        step = ((negative_zero - sat * (one - fill)) if a >= zero else (sat * fill - negative_zero)) * span[k]
        after = g0 + step
        level = max(max(g0, after), level_floor)
        x = min(max(level / poly_g_max, zero), one)
        polynomial = (((c4 * x + c3) * x + c2) * x + c1) * x + c0
        sigma = np.sqrt(abs(step) / level + floor_sq) * (noise_scale * (max(polynomial, zero) * window_scale))
        sigma = np.float32(np.float64(sigma) * reset_factor) if step < zero else sigma
        after += sigma * normal[k]
        after = g_min[k] if -a >= melt_mv else after
        after = min(max(after, g_min[k]), g_max[k])
        count = pulses[k] + np.int32(sw)
        pulses[k] = count
        if loss_per_pulse > 0.0:
            top = g_min[k] + span[k] * np.float32(1.0 - min(np.float64(count) * loss_per_pulse, loss_max))
            top = top if sw else window_top[k]
            window_top[k] = top
            after = min(after, top)
        after = after if sw else g0
        g_new[k] = after
        log_argument[k] = max(abs(after) * inv_g_max, log_floor)


@numba.njit(**_JIT)
def store_programmed(switched: np.ndarray, g_new: np.ndarray, log_g: np.ndarray, nu_normal: np.ndarray,
                     fabricated_z: np.ndarray, stuck: np.ndarray, now_s: float, drift_clock_s: float,
                     g_prog: np.ndarray, t_prog: np.ndarray, drift_prog: np.ndarray, nu: np.ndarray,
                     activation: np.ndarray, q_argument: np.ndarray, consts: np.ndarray) -> None:
    """``_store_programmed``'s state, ``nu_rank_after_programming``, ``drift_exponent`` and
    ``conduction_activation`` for the switched cells; leaves ``-b·ln(max(G/Gmax, floor))`` for
    ``read_noise_q``'s exp in ``q_argument``.

    ``consts``: √(1−ρ²), ρ, the ν mean law (a, b, lo, hi), the ν spread law (a, b, lo, hi),
    drift scale, ln of q's floor, −b, activation of an empty cell, full minus empty, Gmax.
    """
    rank_keep, rho = consts[0], consts[1]
    ma, mb, mlo, mhi, sa, sb, slo, shi = consts[2:10]
    drift_scale, log_q_floor, minus_b, empty_ev, full_minus_empty_ev, g_max = consts[10:16]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    switched = _cells(switched)
    g_new = _cells(g_new)
    nu_normal = _cells(nu_normal)
    fabricated_z = _cells(fabricated_z)
    log_g = _cells(log_g)
    stuck = _cells(stuck)
    g_prog = _cells(g_prog)
    t_prog = _cells(t_prog)
    drift_prog = _cells(drift_prog)
    nu = _cells(nu)
    activation = _cells(activation)
    q_argument = _cells(q_argument)
    n = switched.size
    for k in range(n):
        sw = switched[k]
        g = g_new[k]
        z = nu_normal[k] * rank_keep + rho * fabricated_z[k]
        lg = log_g[k]
        mean = min(max(lg * ma + mb, mlo), mhi)
        spread = min(max(lg * sa + sb, slo), shi)
        value = zero if stuck[k] else abs(spread * z + mean) * drift_scale
        g_prog[k] = g if sw else g_prog[k]
        t_prog[k] = now_s if sw else t_prog[k]
        drift_prog[k] = drift_clock_s if sw else drift_prog[k]
        nu[k] = value if sw else nu[k]
        fill = min(max(g / g_max, zero), one)
        activation[k] = empty_ev + full_minus_empty_ev * fill if sw else activation[k]
        q_argument[k] = max(lg, log_q_floor) * minus_b if sw else zero


@numba.njit(**_JIT)
def store_noise_amplitude(switched: np.ndarray, exp_q: np.ndarray, a: np.float32, cap: np.float32,
                          scale: np.float32, q: np.ndarray) -> None:
    """The rest of ``read_noise_q`` (``min(a·e, cap)·scale``) for the switched cells."""
    q = _cells(q)
    exp_q = _cells(exp_q)
    switched = _cells(switched)
    n = q.size
    for k in range(n):
        q[k] = min(exp_q[k] * a, cap) * scale if switched[k] else q[k]


@numba.njit(**_JIT)
def relaxation_arguments(now_s: float, t_prog: np.ndarray, inv: np.ndarray, slow_argument: np.ndarray,
                         fast_argument: np.ndarray) -> None:
    """``physics.relaxation``'s arguments of numpy's log1p and expm1: ``since / τ`` and
    ``-since / τ_fast``, ``since`` the time since programming (numpy subtracts in float64,
    then rounds) floored at 0. ``inv``: τ and τ_fast as float32 (numpy divides by them)."""
    t_prog = _cells(t_prog)
    slow_argument = _cells(slow_argument)
    fast_argument = _cells(fast_argument)
    n = t_prog.size
    zero = np.float32(0.0)
    tau, fast_tau = inv[0], inv[1]
    for k in range(n):
        since = np.float32(now_s - t_prog[k])
        since = since if since >= zero else zero
        slow_argument[k] = since / tau
        fast_argument[k] = -since / fast_tau


@numba.njit(**_JIT)
def relaxed_conductance(g_prog: np.ndarray, fast: np.ndarray, slow: np.ndarray, log1p_slow: np.ndarray,
                        expm1_fast: np.ndarray, profile_denominator: float, out: np.ndarray) -> None:
    """``g_prog + relaxation`` as ``_conductance`` has it: the fast term in float32, the slow
    one in float64 (numpy divides the profile by a float64 scalar), their sum and the
    conductance's in float64, rounded once into ``out``."""
    fast = _cells(fast)
    expm1_fast = _cells(expm1_fast)
    slow = _cells(slow)
    log1p_slow = _cells(log1p_slow)
    out = _cells(out)
    g_prog = _cells(g_prog)
    n = fast.size
    for k in range(n):
        fast_term = fast[k] * -expm1_fast[k]
        slow_term = np.float64(slow[k]) * np.sqrt(np.float64(log1p_slow[k]) / profile_denominator)
        out[k] = np.float32(np.float64(g_prog[k]) + (np.float64(fast_term) + slow_term))


@numba.njit(**_JIT)
def count_programmings(switched: np.ndarray, t_prog: np.ndarray, now_s: float, memory_s: float,
                       programmings: np.ndarray) -> int:
    """``_store_relaxation``'s count of programmings in quick succession for the switched
    cells (one more where the last was within ``memory_s`` of now, else one), before the
    programming time is overwritten; returns the largest count."""
    switched = _cells(switched)
    t_prog = _cells(t_prog)
    programmings = _cells(programmings)
    n = switched.size
    top = np.int32(0)
    for k in range(n):
        before = programmings[k]
        recent = (now_s - t_prog[k]) < memory_s
        count = before * np.int32(recent) + np.int32(1)  # arithmetic, not a branch: SIMD
        count = count if switched[k] else before
        programmings[k] = count
        top = max(top, count)
    return top


@numba.njit(**_JIT)
def store_relaxation(switched: np.ndarray, stuck: np.ndarray, g_new: np.ndarray, fast_normal: np.ndarray,
                     slow_normal: np.ndarray, programmings: np.ndarray, shrink_by_count: np.ndarray,
                     shrink: np.ndarray, consts: np.ndarray, early_coeff: np.ndarray, late_coeff: np.ndarray,
                     relax: np.ndarray, relax_slow: np.ndarray) -> None:
    """The rest of ``ChipModel._store_relaxation`` for the switched cells (after
    ``count_programmings``): ``physics.relaxation_sigmas_us`` (both σ polynomials by Horner's
    rule, lowest order first, padded with zeros to five terms), times the count's shrink
    (``shrink_by_count[k]``: numpy's ``float32(k) ** -exponent``) and a draw each.

    The shrink is looked up into ``shrink`` (a work array) in a loop of its own: a lookup in
    the σ loop kept LLVM from vectorising it, which made it ten times slower.

    ``consts`` (float32): Gmax, the polynomials' window scale, the fast σ's two scales, the
    slow σ's scale."""
    g_max, window_scale, s0, s1, slow_scale = consts[0], consts[1], consts[2], consts[3], consts[4]
    e0, e1, e2, e3, e4 = early_coeff[0], early_coeff[1], early_coeff[2], early_coeff[3], early_coeff[4]
    l0, l1, l2, l3, l4 = late_coeff[0], late_coeff[1], late_coeff[2], late_coeff[3], late_coeff[4]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    switched = _cells(switched)
    g_new = _cells(g_new)
    programmings = _cells(programmings)
    shrink = _cells(shrink)
    fast_normal = _cells(fast_normal)
    slow_normal = _cells(slow_normal)
    stuck = _cells(stuck)
    relax = _cells(relax)
    relax_slow = _cells(relax_slow)
    n = switched.size
    for k in range(n):
        shrink[k] = shrink_by_count[programmings[k]]
    for k in range(n):
        sw = switched[k]
        x = min(max(g_new[k] / g_max, zero), one)
        early = max((((e4 * x + e3) * x + e2) * x + e1) * x + e0, zero) * window_scale
        late = max((((l4 * x + l3) * x + l2) * x + l1) * x + l0, zero) * window_scale
        fast = early * (s0 + s1 * x) * (shrink[k] * fast_normal[k])
        slow = slow_scale * np.sqrt(max(late * late - early * early, zero)) * (shrink[k] * slow_normal[k])
        held = stuck[k]
        relax[k] = (zero if held else fast) if sw else relax[k]
        relax_slow[k] = (zero if held else slow) if sw else relax_slow[k]


@numba.njit(**_JIT)
def restart_flicker(components: np.ndarray, array: int, first_row: int, total: np.ndarray, fresh: np.ndarray,
                    restart_sigma: np.ndarray, scale: np.float32, where: np.ndarray, restarted_s: np.ndarray,
                    now_s: float) -> None:
    """``FlickerState.restart`` for the cells in ``where`` (rows from ``first_row`` of ``array``):
    the drawn components from ``fresh`` times their restart σ, their sum (times ``scale``) as
    the total, and the restart time. Row by row, on one-dimensional row views, with the sum
    carried along in a row of its own: a row's components are summed while they are written,
    and every inner loop is a contiguous select that LLVM vectorises (indexing the 4-d state
    in the inner loop, or reading it back to sum, made this twice as slow)."""
    rows, cols = total.shape
    drawn = restart_sigma.size
    zero = np.float32(0.0)
    acc = np.empty(cols, dtype=np.float32)
    for i in range(rows):
        row = first_row + i
        restart = where[i]
        acc[:] = zero
        for k in range(drawn):
            sigma = restart_sigma[k]
            component = components[k, array, row]
            draw = fresh[k, i]
            for j in range(cols):
                value = draw[j] * sigma if restart[j] else component[j]
                component[j] = value
                acc[j] += value
        row_total = total[i]
        row_restarted = restarted_s[i]
        for j in range(cols):
            row_total[j] = acc[j] * scale if restart[j] else row_total[j]
            row_restarted[j] = now_s if restart[j] else row_restarted[j]


@numba.njit(cache=True)
def standard_normal_into(rng: np.random.Generator, out: np.ndarray) -> None:
    """``rng.standard_normal(dtype=np.float32, out=out)``: numba's port of numpy's float32
    ziggurat takes the same bits from the same generator, so the draws and the generator's
    state after them are numpy's to the last bit (``tests/test_fused_pulse.py``), in about 0.6
    of numpy's time (numpy calls its bit generator through a pointer per draw)."""
    out[:] = rng.standard_normal(out.size, dtype=np.float32)
