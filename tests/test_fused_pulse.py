"""The compiled pulse loops (labctl_sims.fused) against the numpy path of labctl_sims.physics.

Two twins built alike, one on each path, take the same pulses and reads; every piece of
state a pulse sets, and every read, must be the same to the last bit (the loops do numpy's
float32 operations in numpy's order), on every preset and on sizes that do and do not fill
a pulse block.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from labctl_sims import kernels
from labctl_sims.chip import ChipModel
from labctl_sims.presets import PRESETS

pytest.importorskip("numba")

STATE = ("_g_prog", "_t_prog", "_drift_prog", "_nu", "_q", "_activation", "_relax", "_relax_slow",
         "_programmings", "_pulses", "_window_top")


def chip_on(path: str, monkeypatch, preset: str, seed: int, rows: int, cols: int) -> ChipModel:
    monkeypatch.setenv(kernels.CHOICE_VARIABLE, path)
    return ChipModel(preset, seed=seed, rows=rows, cols=cols)


def mixed_amplitudes(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """SET and RESET pulses of every strength, below threshold, zero, and melting RESETs."""
    choice = rng.integers(0, 5, shape)
    amplitude = rng.uniform(600, 2400, shape)
    amplitude = np.where(choice == 1, -rng.uniform(800, 3900, shape), amplitude)
    amplitude = np.where(choice == 2, rng.uniform(-400, 400, shape), amplitude)
    amplitude = np.where(choice == 3, 0, amplitude)
    return amplitude.astype(np.int16)


def run(chip: ChipModel, monkeypatch, path: str, seed: int) -> list[np.ndarray]:
    monkeypatch.setenv(kernels.CHOICE_VARIABLE, path)
    rng = np.random.default_rng(seed)
    reads = []
    for step in range(6):
        amplitude = mixed_amplitudes(rng, (chip.rows, chip.cols))
        if step % 2:
            rows = np.sort(rng.choice(chip.rows, size=max(1, chip.rows // 3), replace=False))
            chip.program_rows(0, rows, amplitude[rows], 100.0)
        else:
            chip.program(0, slice(None), amplitude, float(rng.choice([50.0, 100.0, 300.0])))
        reads.append(chip.read_codes(0, slice(None), 0.2, 4).copy())
        chip.advance(float(rng.uniform(0.01, 4000.0)))
    return reads


def assert_same_chip(reference: ChipModel, fused: ChipModel) -> None:
    for name in STATE:
        np.testing.assert_array_equal(getattr(fused, name), getattr(reference, name), err_msg=name)
    for name in ("_components", "total", "_restarted_s"):
        np.testing.assert_array_equal(getattr(fused._flicker, name), getattr(reference._flicker, name), err_msg=name)
    assert fused._programmed_count == reference._programmed_count


@pytest.mark.parametrize("preset", ["pcm", "rram", "sram-64"])
@pytest.mark.parametrize("rows, cols, seed", [(64, 64, 0), (100, 37, 3), (130, 200, 11)])
def test_fused_pulses_leave_the_state_the_numpy_path_leaves(monkeypatch, preset, rows, cols, seed):
    reference = chip_on("numpy", monkeypatch, preset, seed, rows, cols)
    fused = chip_on("numba", monkeypatch, preset, seed, rows, cols)
    reference_reads = run(reference, monkeypatch, "numpy", seed)
    fused_reads = run(fused, monkeypatch, "numba", seed)
    assert_same_chip(reference, fused)
    for expected, got in zip(reference_reads, fused_reads, strict=True):
        np.testing.assert_array_equal(got, expected)
    moved = np.count_nonzero(reference._pulses)
    assert moved > 0.5 * rows * cols  # the comparison covered switching cells, not an idle chip


@pytest.mark.parametrize("preset", ["pcm", "rram"])
def test_fused_pulses_away_from_300_kelvin_leave_the_numpy_paths_state(monkeypatch, preset):
    """Away from 300 K the conductance a pulse starts from carries the conduction factor (and
    on RRAM the relaxation beside it): a branch the runs at 300 K above never take."""
    chips = {}
    reads = {}
    for path in ("numpy", "numba"):
        chip = chip_on(path, monkeypatch, preset, 5, 48, 40)
        chip.set_temperature(340.0)
        chip.advance(600.0)
        assert chip.thermal.temperature_k != 300.0
        reads[path] = run(chip, monkeypatch, path, 5)
        chips[path] = chip
    assert_same_chip(chips["numpy"], chips["numba"])
    for expected, got in zip(reads["numpy"], reads["numba"], strict=True):
        np.testing.assert_array_equal(got, expected)


def test_amplitudes_in_any_memory_order_pulse_alike(monkeypatch):
    """The loops take contiguous blocks of whole rows; amplitudes transposed or strided in
    memory give the numpy path's chip, not a refusal."""
    chips = {}
    rng = np.random.default_rng(4)
    amplitude = mixed_amplitudes(rng, (40, 48))
    for path in ("numpy", "numba"):
        chip = chip_on(path, monkeypatch, "pcm", 4, 48, 40)
        chip.program(0, slice(None), np.asfortranarray(amplitude.T), 100.0)
        chip.program(0, slice(None), np.repeat(amplitude.T, 2, axis=1)[:, ::2], 100.0)
        chips[path] = chip
    assert_same_chip(chips["numpy"], chips["numba"])


def test_fused_path_is_the_one_that_ran(monkeypatch):
    """The comparison above would pass vacuously if both chips took the numpy path."""
    monkeypatch.setenv(kernels.CHOICE_VARIABLE, "numba")
    assert kernels.fused() is not None
    monkeypatch.setenv(kernels.CHOICE_VARIABLE, "numpy")
    assert kernels.fused() is None


def test_an_unknown_kernel_choice_is_refused(monkeypatch):
    monkeypatch.setenv(kernels.CHOICE_VARIABLE, "fortran")
    with pytest.raises(ValueError, match="LABCTL_TWIN_KERNELS='fortran'"):
        kernels.fused()


def test_a_broken_numba_falls_back_to_the_numpy_path_with_a_warning(monkeypatch):
    """Installed but unusable (say, built for another numpy): the twin still runs, and says why."""
    import builtins

    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name == "numba":
            raise SystemError("numba built for another numpy")
        return real_import(name, *args, **kwargs)

    import labctl_sims

    monkeypatch.delitem(__import__("sys").modules, "labctl_sims.fused", raising=False)
    monkeypatch.delattr(labctl_sims, "fused", raising=False)  # else the package hands back the loaded module
    monkeypatch.setattr(builtins, "__import__", failing_import)
    kernels._fused.cache_clear()
    try:
        monkeypatch.setenv(kernels.CHOICE_VARIABLE, "auto")
        with pytest.warns(RuntimeWarning, match="numpy path"):
            assert kernels.fused() is None
        monkeypatch.setenv(kernels.CHOICE_VARIABLE, "numba")
        with pytest.raises(SystemError):
            kernels.fused()
    finally:
        kernels._fused.cache_clear()


def test_a_chip_with_a_threshold_at_or_below_zero_pulses_on_the_numpy_path(monkeypatch):
    """The loops give one drive a cell, exact only with both thresholds positive: a chip
    fabricated with a SET threshold below zero keeps the numpy path's pulses (and its chip)."""
    overrides = {"set_threshold_mv": 20.0, "set_threshold_spread_mv": 40.0}
    monkeypatch.setenv(kernels.CHOICE_VARIABLE, "numba")
    fused = ChipModel("pcm", seed=1, rows=32, cols=32, overrides=overrides)
    assert (fused.cells.set_threshold <= 0).any() and fused._pulse_loops is None
    monkeypatch.setenv(kernels.CHOICE_VARIABLE, "numpy")
    reference = ChipModel("pcm", seed=1, rows=32, cols=32, overrides=overrides)
    reference_reads, fused_reads = run(reference, monkeypatch, "numpy", 1), run(fused, monkeypatch, "numba", 1)
    assert_same_chip(reference, fused)
    for expected, got in zip(reference_reads, fused_reads, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_only_presets_whose_sigma_laws_the_loops_evaluate_take_them():
    """The loops evaluate σ polynomials of five terms; a sixth would be dropped, so a preset
    with one keeps the numpy path."""
    rram = PRESETS["rram"]
    assert kernels.FusedConstants.fit(rram) and kernels.FusedConstants.fit(PRESETS["pcm"])
    assert not kernels.FusedConstants.fit(replace(rram, relaxation_coeff_us=(*rram.relaxation_coeff_us, 0.5)))
    assert not kernels.FusedConstants.fit(replace(rram, prog_coeff_us=(*rram.prog_coeff_us, 0.5)))


def test_the_compiled_normals_are_numpys_draws_and_leave_its_generator_where_numpy_does():
    from labctl_sims import fused

    ours, numpys = np.random.default_rng(5), np.random.default_rng(5)
    drawn = np.empty(100_003, dtype=np.float32)
    fused.standard_normal_into(ours, drawn)
    np.testing.assert_array_equal(drawn, numpys.standard_normal(100_003, dtype=np.float32))
    assert ours.integers(0, 2**62) == numpys.integers(0, 2**62)
