"""A network's dense layers on the chip: tiled over arrays, signed weights on column pairs.

Each chip layer ``k`` (not marked digital) is cut into tiles of at most ``rows`` inputs and
``cols / 2`` outputs. Tiles are placed on shelves (``_place``), never sharing a cell; each is
measured on its own (an MVM drives only its tile's rows, the other rows at 0 V add nothing,
and only its columns are read), so tiles may share rows or columns; the next array takes
over when one is full. A weight ``w`` becomes a differential pair,
``G(2j) = low + s·max(w, 0)``, ``G(2j+1) = low + s·max(−w, 0)``, with one scale ``s`` per
layer (the largest |w| at ``high``), so a tile computes ``Σ v_i (G+ − G−) = s·Σ v_i w_i``.

Inputs are the DAC's signed codes (per sample, ``x ≈ codes·scale``). Each tile's pair
outputs are calibrated after programming: random calibration inputs, a per-pair affine
``D_measured = a·D_intended + b`` against what the *intended* weights compute (the
deployment's output scale), judged on held-out inputs. Partial sums of a layer cut by rows
are added digitally; biases and activations run in numpy.

Where the arrays have room, a tile is held several times (``copies``): repeated down the
columns, its copies take the same inputs and add in the column; repeated along the rows,
each copy is converted and the outputs averaged. Either way a weight is the mean of
independent pairs. The plan's arrays may span several chips (``ArraySlot``: each array with
its own board and read-out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labctl_calibration.accuracy import DeployedAccuracy, deployed_accuracy, output_scale
from labctl_calibration.mvm import at_gain, auto_gain, measure_outputs
from labctl_calibration.network import DAC_CODES, Network, quantise_inputs
from labctl_calibration.readout import Readout
from labctl_drivers.interface import ChipBoard


class ChipNetworkParams(BaseModel):
    """A protocol file's ``[network]`` table (the validate protocols')."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    low_us: float = Field(2.0, ge=0)  # a zero weight's conductance (both cells of its pair)
    high_us: float = Field(20.0, gt=0)  # the largest |w| of a layer
    calibration_vectors: int = Field(256, ge=8, le=100_000)  # per tile: half fit the output scale, half judge it
    averaging: int = Field(16, ge=1, le=256)
    headroom: float = Field(0.5, gt=0, le=1)
    copies: int = Field(16, ge=1, le=1024)  # at most this many pairs per weight, where the arrays have room
    chips: tuple[str, ...] = ()  # further chips of the rig the tiles may use, after this one's arrays (--with)
    samples: int = Field(0, ge=0)  # test samples used (0: all)
    at_s: tuple[float, ...] = ()  # later looks, seconds after programming (the first look is at once)
    maintain: bool = True  # before each later look: the [maintain] table's refreshes, then the output scales re-fitted
    seed: int = Field(3, ge=0)


@dataclass(frozen=True)
class Tile:
    layer: int
    array: int
    row0: int
    col0: int  # physical column of the first pair's positive cell
    inputs: slice  # of the layer's inputs
    outputs: slice  # of the layer's outputs
    row_copies: int = 1  # the tile's weights repeated down the columns: the same inputs on each, summed in the column
    col_copies: int = 1  # repeated along the rows: each copy's outputs converted, then averaged digitally

    @property
    def rows(self) -> int:
        return self.inputs.stop - self.inputs.start

    @property
    def pairs(self) -> int:
        return self.outputs.stop - self.outputs.start

    @property
    def copies(self) -> int:
        return self.row_copies * self.col_copies

    @property
    def height(self) -> int:
        return self.rows * self.row_copies

    @property
    def width(self) -> int:
        return 2 * self.pairs * self.col_copies


def plan_tiles(network: Network, arrays: int, rows: int, cols: int, copies: int = 1) -> list[Tile]:
    """Every chip layer's tiles placed on the arrays (``_place``); ValueError when they do not fit.

    With ``copies`` > 1, the area the network leaves free holds up to that many copies of
    each weight (``row_copies x col_copies``). A weight held by n independent pairs carries
    1/√n of one pair's programming error, read noise and drift spread (Boybat et al., Nature
    Communications 2018: multi-memristive synapses); copies are added one tile at a time,
    the tile with the fewest first, as long as everything still fits."""
    tiles = _place(network, arrays, rows, cols, {})
    if tiles is None:
        raise ValueError(f"the network's chip layers need more than the chip's {arrays} array(s) of "
                         f"{rows}x{cols}: mark a layer digital, or use a larger chip")
    chosen: dict[int, tuple[int, int]] = {}
    stuck: set[int] = set()
    while True:
        candidates = [i for i, t in enumerate(tiles) if i not in stuck and t.copies < copies]
        if not candidates:
            return tiles
        index = min(candidates, key=lambda i: (tiles[i].copies, i))
        tile, grown = tiles[index], None
        # grow the side with fewer copies first (rows on a tie: the column sums them for free)
        options = sorted([(tile.row_copies + 1, tile.col_copies), (tile.row_copies, tile.col_copies + 1)],
                         key=lambda rc: (max(rc) - min(rc), -rc[0]))
        for option in options:
            if option[0] * option[1] > copies:
                continue
            placed = _place(network, arrays, rows, cols, chosen | {index: option})
            if placed is not None:
                grown = placed
                chosen[index] = option
                break
        if grown is None:
            stuck.add(index)
        else:
            tiles = grown


def _place(network: Network, arrays: int, rows: int, cols: int,
           copies: dict[int, tuple[int, int]]) -> list[Tile] | None:
    """Tiles in order, each ``copies.get(i, (1, 1))`` times, on shelves: left to right along a
    band of rows, the next band below when the columns are full, the next array when the rows
    are. Tiles never share a cell; they may share rows or columns, because each tile is
    measured on its own (only its rows driven, only its columns read). None when they do not fit."""
    tiles: list[Tile] = []
    array, shelf, shelf_height, col = 0, 0, 0, 0
    pairs_per_tile = cols // 2
    if pairs_per_tile < 1:
        raise ValueError(f"an array of {cols} column(s) holds no differential pair")
    for k, w in enumerate(network.weights):
        if k in network.digital:
            continue
        for i0 in range(0, w.shape[0], rows):
            for j0 in range(0, w.shape[1], pairs_per_tile):
                r, p = min(rows, w.shape[0] - i0), min(pairs_per_tile, w.shape[1] - j0)
                rc, cc = copies.get(len(tiles), (1, 1))
                height, width = r * rc, 2 * p * cc
                if height > rows or width > cols:
                    return None
                if col + width > cols:  # this band is full: the next one below
                    shelf, shelf_height, col = shelf + shelf_height, 0, 0
                if shelf + height > rows:  # this array is full
                    array, shelf, shelf_height, col = array + 1, 0, 0, 0
                if array >= arrays:
                    return None
                tiles.append(Tile(k, array, shelf, col, slice(i0, i0 + r), slice(j0, j0 + p), rc, cc))
                shelf_height, col = max(shelf_height, height), col + width
    return tiles


def layer_scales(network: Network, params: ChipNetworkParams) -> dict[int, float]:
    """µS per unit weight, per chip layer."""
    return {k: (params.high_us - params.low_us) / float(np.abs(w).max() or 1.0)
            for k, w in enumerate(network.weights) if k not in network.digital}


def array_targets(network: Network, tiles: list[Tile], params: ChipNetworkParams, arrays: int, rows: int,
                  cols: int) -> np.ndarray:
    """(arrays, rows, cols) conductance targets; cells no tile uses sit at ``low_us`` (a zero weight)."""
    targets = np.full((arrays, rows, cols), params.low_us)
    scales = layer_scales(network, params)
    for t in tiles:
        w = network.weights[t.layer][t.inputs, t.outputs] * scales[t.layer]
        pair = np.empty((t.rows, 2 * t.pairs))
        pair[:, 0::2], pair[:, 1::2] = np.clip(w, 0, None), np.clip(-w, 0, None)
        targets[t.array, t.row0:t.row0 + t.height, t.col0:t.col0 + t.width] += np.tile(pair, (t.row_copies, t.col_copies))
    return targets


@dataclass(frozen=True)
class ArraySlot:
    """Where a plan's array index lives: an array of one of the rig's chips, read through
    that chip's own calibrated read-out. A network tiled over several chips numbers their
    arrays one after another."""

    board: ChipBoard
    readout: Readout
    array: int  # on its board
    chip: str = ""


def chip_slots(board: ChipBoard, readout: Readout, chip: str = "") -> list[ArraySlot]:
    return [ArraySlot(board, readout, a, chip) for a in range(board.geometry().arrays)]


@dataclass
class TileCalibration:
    gain: int
    slope: np.ndarray  # per pair: D_measured = slope·D_intended + intercept (µA)
    intercept_ua: np.ndarray
    accuracy: DeployedAccuracy | None  # the tile's figures against its intended weights (held-out inputs)


class ChipNetwork:
    """Computes a network's chip layers on the board: ``forward`` gives logits."""

    def __init__(self, board: ChipBoard, readout: Readout, network: Network, tiles: list[Tile],
                 targets_us: np.ndarray, params: ChipNetworkParams, slots: list[ArraySlot] | None = None) -> None:
        self.readout, self.network, self.tiles = readout, network, tiles
        self.slots = slots if slots is not None else chip_slots(board, readout)
        self.targets_us, self.params = targets_us, params
        self.scales = layer_scales(network, params)
        self.calibration: dict[int, TileCalibration] = {}
        self.rng = np.random.default_rng(params.seed)

    def _volts(self, codes: np.ndarray) -> np.ndarray:
        return codes / DAC_CODES * self.readout.read_voltage

    def _drive(self, tile: Tile, codes: np.ndarray, gain: int) -> np.ndarray:
        """The tile's pair differences (µA) for these input codes (vectors x tile rows), as one
        copy of its weights gives them: the mean over its copies."""
        rows = self.targets_us.shape[1]
        vectors = np.zeros((len(codes), rows))
        vectors[:, tile.row0:tile.row0 + tile.height] = np.tile(codes, (1, tile.row_copies))
        slot = self._select(tile)
        with at_gain(slot.board, gain):
            currents, _ = measure_outputs(slot.board, slot.readout, vectors, gain)
        block = currents[:, tile.col0:tile.col0 + tile.width]
        difference = block[:, 0::2] - block[:, 1::2]  # (vectors, col_copies x pairs)
        return difference.reshape(len(codes), tile.col_copies, tile.pairs).mean(axis=1) / tile.row_copies

    def _select(self, tile: Tile) -> ArraySlot:
        slot = self.slots[tile.array]
        slot.board.array = slot.array
        slot.board.averaging = self.params.averaging
        return slot

    def _intended_signed(self, tile: Tile) -> np.ndarray:
        """One copy's intended pair differences (µS)."""
        block = self.targets_us[tile.array, tile.row0:tile.row0 + tile.rows, tile.col0:tile.col0 + 2 * tile.pairs]
        return block[:, 0::2] - block[:, 1::2]

    def calibrate(self, signed_inputs: frozenset[int] = frozenset()) -> dict[int, TileCalibration]:
        """Every tile's output scale against its intended weights, and its figures.

        Calibration inputs are drawn as the layer's inputs come: non-negative (pixels, ReLU
        outputs) unless the layer is in ``signed_inputs``; the range is chosen with every
        row at full input among the probes, so no input the layer can get clips."""
        n = self.params.calibration_vectors
        test = np.arange(n) % 2 == 1
        for index, tile in enumerate(self.tiles):
            low = -DAC_CODES if tile.layer in signed_inputs else 0
            codes = self.rng.integers(low, DAC_CODES + 1, size=(n, tile.rows))
            probes = np.zeros((2, self.targets_us.shape[1]))
            probes[:, tile.row0:tile.row0 + tile.height] = [[DAC_CODES], [-DAC_CODES]]
            slot = self._select(tile)
            gain = auto_gain(slot.board, slot.readout, probes, self.params.headroom,
                             columns=slice(tile.col0, tile.col0 + tile.width))  # other tiles' columns may share rows
            measured = self._drive(tile, codes, gain)
            repeat = self._drive(tile, codes[test], gain)
            signed = self._intended_signed(tile)
            volts = self._volts(codes)
            slope, intercept = output_scale(volts @ signed, measured, ~test)
            figures = deployed_accuracy(signed, volts, measured, repeat, test)
            self.calibration[index] = TileCalibration(gain, slope, intercept, figures)
        return self.calibration

    def matmul(self, layer: int, x: np.ndarray) -> np.ndarray:
        """``x @ W_layer`` as the chip computes it, in the weights' units."""
        codes, scale = quantise_inputs(x)
        out = np.zeros((len(x), self.network.weights[layer].shape[1]))
        unit = self.scales[layer] * self.readout.read_voltage / DAC_CODES  # µA per (code x weight)
        for index, tile in enumerate(self.tiles):
            if tile.layer != layer:
                continue
            cal = self.calibration[index]
            difference = self._drive(tile, codes[:, tile.inputs], cal.gain)
            out[:, tile.outputs] += (difference - cal.intercept_ua) / cal.slope / unit
        return out * scale

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.network.forward(x, self.matmul)


def arrays_needed(tiles: list[Tile]) -> int:
    return 1 + max((t.array for t in tiles), default=0)
