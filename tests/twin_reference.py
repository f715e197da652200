"""Reference procedures the twin's statistics tests share: aihwkit's tables, a one-shot
pulse from empty and an IBM-style program-and-verify, both aimed with the cells' true
parameters (tests may read the ground truth; calibration never does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import labctl_sims as sims

REFERENCE = Path(__file__).parent / "reference"
V_READ = 0.2


def cell_chip(preset: str, seed: int, size: int) -> sims.ChipModel:
    """A twin chip for comparing its *cells* with aihwkit's device models: the wires' IR drop
    is off (a systematic read error of the periphery that aihwkit's noise models do not
    contain); everything of the cells, telegraph noise included, stays as the preset has it."""
    return sims.ChipModel(preset, seed=seed, rows=size, cols=size, ir_drop_ohm=0.0)


def aihwkit_table(name: str) -> dict:
    return json.loads((REFERENCE / name).read_text())


def ks_distance(sample: np.ndarray, reference_percentiles: list[float], percentiles: list[int]) -> float:
    """Kolmogorov-Smirnov distance between a sample and a distribution known by its percentiles."""
    ordered = np.sort(sample)
    below = np.searchsorted(ordered, np.asarray(reference_percentiles), side="right") / ordered.size
    return float(np.max(np.abs(below - np.asarray(percentiles) / 100.0)))


def conductance_read(chip: sims.ChipModel, averages: int = 1, array: int = 0) -> np.ndarray:
    """One array read through the ADC, turned back into µS with the true column trims and
    non-linearity (what a perfect read-out calibration would do)."""
    codes = chip.read_codes(array, slice(None), V_READ, averages).astype(float)
    truth = chip.ground_truth()
    inl = chip.periphery.inl(array, codes)  # INL at the read code: within a hundredth of a code of at the ideal one
    return (codes - inl - truth.adc_offset_lsb[array]) / truth.adc_gain[array] * chip.lsb_ua / V_READ


def aimed_amplitude(chip: sims.ChipModel, g_now: np.ndarray, move: np.ndarray, array: int = 0) -> np.ndarray:
    """The pulse that moves each cell by ``move`` µS on average (SET up, partial RESET down)."""
    p, cells = chip.params, chip.cells.region((array,))
    fill = np.clip((g_now - cells.g_min) / cells.span, 1e-3, 1 - 1e-3)
    up = np.clip(move / (cells.span * (1 - fill)), 0, 0.999)
    down = np.clip(-move / (cells.span * fill), 0, 0.999)
    set_mv = cells.set_threshold - np.log1p(-up) / cells.set_rate * p.set_scale_mv
    reset_mv = cells.reset_threshold - np.log1p(-down) / cells.reset_rate * p.reset_scale_mv
    amplitude = np.where(move > 0, set_mv, -np.minimum(reset_mv, p.reset_melt_mv - 1))
    return np.where(move == 0, 0.0, amplitude).astype(np.float32)


def one_shot(chip: sims.ChipModel, targets: np.ndarray, array: int = 0) -> np.ndarray:
    """Melt every cell empty, then one SET pulse per cell sized to land on its target on
    average. Returns the mask of cells that could be aimed."""
    cells = chip.cells.region((array,))
    chip.program(array, slice(None), np.full(targets.shape, -3800), 100)
    g_empty = chip.ground_truth().programmed_us[array]
    reachable = (targets < 0.95 * cells.g_max) & ~cells.stuck
    move = np.where(reachable, targets - g_empty, 0.0)
    chip.program(array, slice(None), aimed_amplitude(chip, g_empty, move, array), 100)
    return reachable


def program_and_verify(chip: sims.ChipModel, targets: np.ndarray, tolerance_us: float = 0.25,
                       iterations: int = 20, averages: int = 16) -> np.ndarray:
    """IBM-style iterative programming: read (averaged), pulse every cell further than
    ``tolerance_us`` (by default 1 % of a 25 µS window, aihwkit's ``program_weights`` stopping level)
    toward its target, repeat. Returns the mask of cells that could be aimed."""
    usable = one_shot(chip, targets)
    for _ in range(iterations):
        g_read = conductance_read(chip, averages)
        error = np.where(usable, targets - g_read, 0.0)
        pending = np.abs(error) > tolerance_us
        if not pending.any():
            break
        chip.program(0, slice(None), aimed_amplitude(chip, g_read, np.where(pending, error, 0.0)), 100)
        chip.advance(0.1)  # a verify read of a real board comes some 100 ms after the pulse
    return usable
