"""A dense network in a framework-neutral file, and how it computes in software.

The file is an ``.npz`` with ``W0, b0, W1, b1, …`` (weights ``inputs x outputs``, biases),
optionally ``digital`` (indices of layers that stay in numpy) and ``activation`` (``relu``
between layers; the last layer's outputs are the logits). Any framework can write it.

Two software references judge a chip's result: the float model, and the same model at the
chip's precision: inputs quantised per sample to the DAC's signed codes, weights to the
grid the measured programming error holds apart, outputs to the ADC's step. The chip should sit
between them (it has the quantised model's limits and its own noise on top).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

DAC_CODES = 127  # signed input codes, ±127 (PROTOCOL.md MVM?)


@dataclass(frozen=True)
class Network:
    weights: tuple[np.ndarray, ...]  # each (inputs, outputs)
    biases: tuple[np.ndarray, ...]
    digital: frozenset[int] = frozenset()  # layers computed in numpy, not on the chip

    def __post_init__(self) -> None:
        if not self.weights or len(self.weights) != len(self.biases):
            raise ValueError("a network needs at least one layer, each with weights W<k> and biases b<k>")
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim != 2 or b.shape != (w.shape[1],):
                raise ValueError(f"layer {k}: W{k} must be inputs x outputs and b{k} one value per output, "
                                 f"got {w.shape} and {b.shape}")
            if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
                raise ValueError(f"layer {k}: weights and biases must be finite")
            if k and w.shape[0] != self.weights[k - 1].shape[1]:
                raise ValueError(f"layer {k}: takes {w.shape[0]} inputs, layer {k - 1} gives {self.weights[k - 1].shape[1]}")

    @property
    def inputs(self) -> int:
        return self.weights[0].shape[0]

    def save(self, path: Path | str) -> None:
        arrays = {f"W{k}": w for k, w in enumerate(self.weights)} | {f"b{k}": b for k, b in enumerate(self.biases)}
        np.savez(path, **arrays, digital=np.array(sorted(self.digital), dtype=int), activation=np.array("relu"))

    @classmethod
    def load(cls, path: Path | str | BinaryIO, where: str | None = None) -> Network:
        try:
            with np.load(path, allow_pickle=False) as saved:
                count = sum(1 for name in saved.files if name.startswith("W"))
                missing = [f"{kind}{k}" for k in range(count) for kind in "Wb" if f"{kind}{k}" not in saved.files]
                if not count or missing:
                    raise ValueError(f"missing {', '.join(missing) or 'W0'}")
                activation = str(saved["activation"]) if "activation" in saved.files else "relu"
                if activation != "relu":
                    raise ValueError(f"activation {activation!r}: only relu is supported")
                return cls(tuple(np.asarray(saved[f"W{k}"], float) for k in range(count)),
                           tuple(np.asarray(saved[f"b{k}"], float) for k in range(count)),
                           frozenset(int(k) for k in saved["digital"]) if "digital" in saved.files else frozenset())
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{where or f'model file {str(path)!r}'}: {err}") from None

    def forward(self, x: np.ndarray, layer_matmul=None) -> np.ndarray:
        """Logits; ``layer_matmul(k, x)`` computes layer k's ``x @ W`` (the chip, or a quantised copy)."""
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            product = x @ w if layer_matmul is None or k in self.digital else layer_matmul(k, x)
            x = product + b
            if k < len(self.weights) - 1:
                x = np.maximum(x, 0.0)
        return x


def quantise_inputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, signed DAC codes and the scale back: ``x ≈ codes · scale``."""
    scale = np.abs(x).max(axis=1, keepdims=True) / DAC_CODES
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(np.rint(x / scale), -DAC_CODES, DAC_CODES), scale


def quantised_matmul(network: Network, weight_step: float, output_step: float):
    """Layer products at the chip's precision: inputs as DAC codes, each weight on a grid of
    ``weight_step`` (a fraction of the layer's largest |w|: the levels a run's programming
    error holds apart), outputs rounded to ``output_step`` of the largest output an input can give."""
    def matmul(k: int, x: np.ndarray) -> np.ndarray:
        w = network.weights[k]
        step = weight_step * float(np.abs(w).max() or 1.0)
        wq = np.rint(w / step) * step
        codes, scale = quantise_inputs(x)
        product = codes @ wq
        lsb = output_step * DAC_CODES * float(np.abs(wq).sum(axis=0).max() or 1.0)
        return np.rint(product / lsb) * lsb * scale
    return matmul


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95 % confidence interval of an accuracy (Wilson score: sound near 0 and 1)."""
    if total == 0:
        return (float("nan"), float("nan"))
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (float(centre - half), float(centre + half))
