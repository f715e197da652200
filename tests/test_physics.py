"""Device equations of the twin, one law at a time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labctl_sims import flicker, physics
from labctl_sims.presets import PCM, PRESETS

P = PCM.__class__(**{**PCM.describe(), "stuck_low_rate": 0.0, "stuck_high_rate": 0.0})
SHAPE = (4000,)


def cells_and_rng(seed=0, params=P):
    rng = np.random.default_rng(seed)
    return physics.draw_cells(params, SHAPE, rng), rng


def mean_step(g, amplitude, width=100.0, params=P):
    cells, rng = cells_and_rng(params=params)
    g = np.full(SHAPE, g, dtype=np.float32)
    normal = rng.standard_normal(SHAPE).astype(np.float32)
    after = physics.apply_pulses(g, np.full(SHAPE, amplitude, dtype=np.float32), width, params, cells, normal)
    return float((after - g).mean())


def test_set_raises_reset_lowers():
    assert mean_step(5.0, 1800) > 0.5
    assert mean_step(15.0, -2200) < -0.5


def test_below_threshold_nothing_moves():
    assert mean_step(10.0, 300) == 0.0
    assert mean_step(10.0, -500) == 0.0


def test_steps_are_state_dependent_soft_bounds():
    assert mean_step(2.0, 1800) > 3 * mean_step(20.0, 1800)
    assert -mean_step(20.0, -2200) > 3 * -mean_step(2.0, -2200)


def test_larger_amplitude_and_width_move_more():
    assert mean_step(5.0, 2000) > mean_step(5.0, 1400)
    assert mean_step(5.0, 1400, width=400) > mean_step(5.0, 1400, width=100)


def test_set_and_reset_are_asymmetric():
    # the same magnitude switches SET but hardly RESET (higher threshold); once both
    # switch, RESET is the stronger
    assert mean_step(12.5, 1150) > 4 * -mean_step(12.5, -1150)
    assert -mean_step(12.5, -2600) > 1.2 * mean_step(12.5, 2600)


def test_cycle_to_cycle_noise_has_a_step_part_and_a_floor_every_pulse_carries():
    cells, rng = cells_and_rng()
    g = np.full(SHAPE, 5.0, dtype=np.float32)
    zero = np.zeros(SHAPE, dtype=np.float32)
    normal = rng.standard_normal(SHAPE).astype(np.float32)
    for amplitude in (1000.0, 1600.0):
        amp = np.full(SHAPE, amplitude, dtype=np.float32)
        noiseless = physics.apply_pulses(g, amp, 100.0, P, cells, zero)
        noisy = physics.apply_pulses(g, amp, 100.0, P, cells, normal)
        step = np.abs(noiseless - g)
        level = np.maximum(noiseless, g)
        expected = physics.prog_sigma_us(level, P) * np.sqrt(step / level + P.prog_floor**2)
        np.testing.assert_allclose(np.abs(noisy - noiseless)[step > 0], (expected * np.abs(normal))[step > 0],
                                   rtol=1e-3, atol=1e-4)
    # the smallest switching pulse is no quieter than the floor
    tiny = physics.apply_pulses(g, cells.set_threshold + 1.0, 100.0, P, cells, normal)
    aimed = physics.apply_pulses(g, cells.set_threshold + 1.0, 100.0, P, cells, zero)
    spread = np.abs(tiny - aimed)[~cells.stuck] / np.abs(normal)[~cells.stuck]
    assert np.all(spread >= 0.99 * P.prog_floor * physics.prog_sigma_us(g[~cells.stuck], P))


def test_nu_rank_is_redrawn_at_each_programming_correlated_with_the_last():
    rng = np.random.default_rng(3)
    fabricated = rng.standard_normal(200_000).astype(np.float32)
    first = physics.nu_rank_after_programming(fabricated, rng.standard_normal(200_000).astype(np.float32), P)
    second = physics.nu_rank_after_programming(fabricated, rng.standard_normal(200_000).astype(np.float32), P)
    assert first.std() == pytest.approx(1.0, rel=0.02)  # the population's ν distribution is unchanged
    assert np.corrcoef(first, second)[0, 1] == pytest.approx(P.nu_cycle_correlation**2, abs=0.01)
    assert np.corrcoef(first, fabricated)[0, 1] == pytest.approx(P.nu_cycle_correlation, abs=0.01)


def test_melting_reset_empties_the_cell():
    cells, rng = cells_and_rng()
    g = physics.apply_pulses(np.full(SHAPE, 20.0, np.float32), np.full(SHAPE, -3800.0, np.float32), 100.0, P,
                             cells, rng.standard_normal(SHAPE).astype(np.float32))
    assert g.max() < 0.5


def test_stuck_cells_ignore_pulses():
    params = PCM.__class__(**{**PCM.describe(), "stuck_low_rate": 0.3, "stuck_high_rate": 0.3})
    cells, rng = cells_and_rng(params=params)
    g = np.full(SHAPE, 10.0, np.float32)
    after = physics.apply_pulses(g, np.full(SHAPE, 2000.0, np.float32), 100.0, params, cells,
                                 rng.standard_normal(SHAPE).astype(np.float32))
    np.testing.assert_array_equal(after[cells.stuck], g[cells.stuck])
    assert (after[~cells.stuck] != g[~cells.stuck]).all()


@settings(max_examples=60, deadline=None)
@given(
    g=arrays(np.float32, 50, elements=st.floats(0.0, 30.0, width=32)),
    amplitude=arrays(np.float32, 50, elements=st.floats(-4000.0, 3000.0, width=32)),
    width=st.floats(10.0, 10000.0),
    preset=st.sampled_from(sorted(PRESETS)),
)
def test_conductance_stays_inside_each_cells_window(g, amplitude, width, preset):
    params = PRESETS[preset]
    rng = np.random.default_rng(1)
    cells = physics.draw_cells(params, (50,), rng)
    g = np.clip(g, cells.g_min, cells.g_max)
    after = physics.apply_pulses(g, amplitude, width, params, cells, rng.standard_normal(50).astype(np.float32))
    assert np.all(after >= cells.g_min) and np.all(after <= cells.g_max)


def test_prog_sigma_is_aihwkits_polynomial():
    g = np.array([0.0, 6.25, 12.5, 25.0])
    x = g / 25.0
    np.testing.assert_allclose(physics.prog_sigma_us(g, PCM), 0.26348 + 1.9650 * x - 1.1731 * x**2)


def test_nu_law_is_aihwkits():
    g = np.array([0.5, 2.5, 12.5, 25.0])
    mean, std = physics.nu_mean_std(g, PCM)
    x = g / 25.0
    np.testing.assert_allclose(mean, np.clip(-0.0155 * np.log(x) + 0.0244, 0.049, 0.1))
    np.testing.assert_allclose(std, np.clip(-0.0125 * np.log(x) - 0.0059, 0.008, 0.045))


def test_read_noise_law_is_aihwkits_and_grows_with_time():
    g = np.array([1.0, 5.0, 12.5, 25.0])
    q = physics.read_noise_q(g, PCM)
    np.testing.assert_allclose(q, np.minimum(0.0088 / (g / 25.0) ** 0.65, 0.2), rtol=1e-6)
    # the 1/f components' sum holds aihwkit's accumulated law, t counted from t0 before the end of programming
    t = np.array([0.0, 1.0, 20.0, 3600.0, 43200.0, 86400.0, 3e6])
    law = np.log((t + 20.0 + 250e-9) / 500e-9)
    np.testing.assert_allclose(flicker.accumulated_variance(t, 20.0), law, rtol=0.003)


def test_one_over_f_components_average_like_ou_processes():
    # a window far shorter than τ leaves a component whole; a far longer one divides it by x / 2
    np.testing.assert_allclose(flicker.window_variance(1e-9, np.array([1.0])), [1.0], rtol=1e-6)
    np.testing.assert_allclose(flicker.window_variance(1e3, np.array([1.0])), [2e-3 * (1 - 1e-3)], rtol=1e-3)
    assert flicker.fresh_sigma(256e-6) < flicker.fresh_sigma(250e-9)


def test_drift_is_a_power_law_from_the_end_of_programming():
    nu = np.full(4, 0.06)
    factor = physics.drift_factor(np.array([0.0, 1e-3, 20.0, 1980.0]), nu, 20.0)
    np.testing.assert_allclose(factor, [1.0, (1 + 1e-3 / 20) ** -0.06, 2.0**-0.06, 100.0**-0.06], rtol=1e-6)


def test_drift_and_conduction_are_thermally_activated():
    assert physics.drift_acceleration(300.0, PCM) == pytest.approx(1.0)
    assert physics.drift_acceleration(360.0, PCM) == pytest.approx(
        np.exp(0.3 / physics.BOLTZMANN_EV * (1 / 300 - 1 / 360)))
    low, high = physics.conduction_activation(np.array([0.0, 25.0]), PCM)
    assert low > high  # amorphous (empty) cells conduct more when hot, relatively
    assert physics.conduction_factor(np.array([low]), 330.0)[0] > 1.5


def test_ir_drop_lowers_cell_voltages_toward_the_far_corner():
    g = np.full((8, 8), 20.0)
    v = physics.ir_drop_voltages(np.full(8, 0.2), g, wire_ohm=5.0)
    assert v[0, 0] < 0.2 and v[0, -1] < v[0, 0]  # further along the row, more drop
    assert v[0, 0] < v[-1, 0]  # the column wire adds rise far from the ADC (row 0)
    np.testing.assert_array_equal(physics.ir_drop_voltages(np.full(8, 0.2), g, 0.0), np.full((8, 8), 0.2))


@pytest.mark.parametrize("seed", [0, 5])
def test_restarted_cells_move_over_the_time_since_their_own_restart(seed):
    """A cell restarted between two updates of a slow 1/f component starts that component at
    its restart value (zero for the slowest) and moves over the time since its restart, not
    since the component's last update; cells left alone keep the stationary spread."""
    from labctl_sims.noise import NoisePool

    shape = (400, 400)
    state = flicker.FlickerState(shape, 20.0, NoisePool(np.random.default_rng(seed)))
    taus = flicker.SLOW_TAUS_S
    k_drawn, k_zero = int(np.flatnonzero(taus > 40.0)[0]), int(np.flatnonzero(taus > 5000.0)[0])
    state.advance(1e9)  # every component updated (now stationary) at t = 1e9
    restarted = np.zeros(shape, dtype=bool)
    restarted[::2] = True
    state.restart((slice(None),), restarted, 1e9 + 0.4 * taus[k_drawn])
    # the drawn component's next update: 0.3 τ after the restart, 0.7 τ after its own last update
    state.advance(1e9 + 0.7 * taus[k_drawn])
    since = 0.3
    sigma_r2 = -np.expm1(-2.0 * 20.0 / taus[k_drawn])
    expected = sigma_r2 * np.exp(-2 * since) - np.expm1(-2 * since)
    component = state._components[k_drawn]
    assert component[restarted].var() == pytest.approx(expected, rel=0.03)
    assert component[~restarted].var() == pytest.approx(1.0, rel=0.03)
    # the zero-restart component: variance 1 - e^(-2 s/τ) since the restart
    state.advance(1e9 + 0.4 * taus[k_drawn] + 0.3 * taus[k_zero])
    zero_restart = state._components[k_zero]
    assert zero_restart[restarted].var() == pytest.approx(-np.expm1(-0.6), rel=0.03)
    assert zero_restart[~restarted].var() == pytest.approx(1.0, rel=0.03)
    # the total a read sees sums the components, the zero-restart ones not updated since counting as zero
    effective = state._components.copy()
    for k in range(state._drawn, taus.size):
        effective[k][state._restarted_s >= state._updated_s[k]] = 0.0
    np.testing.assert_allclose(state.total, effective.sum(axis=0) * np.sqrt(flicker.WEIGHT), rtol=1e-4, atol=1e-4)
