"""Training a small dense network in numpy, and the built-in example's data.

Enough for the example (scikit-learn's bundled 8x8 handwritten digits: no download) and
for noise-aware training: ``weight_noise`` perturbs the weights in every forward pass of
training (the chip's measured programming error, drift and stuck cells), while the
gradient updates the clean weights, so the network learns weights whose noisy copies
still classify.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labctl_calibration.network import Network

WeightNoise = Callable[[int, np.ndarray, np.random.Generator], np.ndarray]  # (layer, W, rng) -> noisy W


def digits(seed: int = 0, test_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (1797 images, pixels 0-16 scaled to 0-1), split at random."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits example needs scikit-learn: pip install 'labctl[examples]'") from None
    data = load_digits()
    x, y = data.data / 16.0, data.target.astype(int)
    order = np.random.default_rng(seed).permutation(len(y))
    test = int(round(test_fraction * len(y)))
    return x[order[test:]], y[order[test:]], x[order[:test]], y[order[:test]]


def train_mlp(x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...] = (32,), epochs: int = 80, rate: float = 0.02,
              batch: int = 32, seed: int = 0, weight_noise: WeightNoise | None = None,
              clip_sigmas: float | None = None) -> Network:
    """Softmax cross-entropy, minibatch SGD with momentum, ReLU hidden layers, He start.

    ``clip_sigmas`` clips each layer's weights to that many of their standard deviations
    after every update: a chip maps a layer's largest weight to its full window, so a few
    outliers would squeeze every other weight into a fraction of it, under the same
    absolute noise (aihwkit's layer-Gaussian clipping does the same for analogue training).
    """
    if clip_sigmas is not None and clip_sigmas <= 0:
        raise ValueError(f"clip_sigmas {clip_sigmas}: must be positive")
    rng = np.random.default_rng(seed)
    sizes = (x.shape[1], *hidden, int(y.max()) + 1)
    weights = [rng.normal(0, np.sqrt(2.0 / a), (a, b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    biases = [np.zeros(b) for b in sizes[1:]]
    velocity = [np.zeros_like(w) for w in weights] + [np.zeros_like(b) for b in biases]
    onehot = np.eye(sizes[-1])[y]
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch):
            pick = order[start:start + batch]
            xb, tb = x[pick], onehot[pick]
            used = [w if weight_noise is None else weight_noise(k, w, rng) for k, w in enumerate(weights)]
            activations = [xb]
            for k, (w, b) in enumerate(zip(used, biases, strict=True)):
                z = activations[-1] @ w + b
                activations.append(np.maximum(z, 0.0) if k < len(used) - 1 else z)
            logits = activations[-1] - activations[-1].max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            delta = (p - tb) / len(pick)
            grads_w, grads_b = [], []
            for k in range(len(used) - 1, -1, -1):
                grads_w.insert(0, activations[k].T @ delta)
                grads_b.insert(0, delta.sum(axis=0))
                if k:
                    delta = (delta @ used[k].T) * (activations[k] > 0)
            if getattr(weight_noise, "scales_with_largest", False):
                for k, w in enumerate(weights):
                    grads_w[k] = grads_w[k] + _largest_weight_gradient(w, used[k], grads_w[k])
            for i, g in enumerate(grads_w + grads_b):
                velocity[i] = 0.9 * velocity[i] - rate * g
            for k in range(len(weights)):
                weights[k] = weights[k] + velocity[k]
                biases[k] = biases[k] + velocity[len(weights) + k]
                if clip_sigmas is not None:
                    bound = clip_sigmas * float(weights[k].std())
                    weights[k] = np.clip(weights[k], -bound, bound)
    return Network(tuple(weights), tuple(biases))


def _largest_weight_gradient(w: np.ndarray, used: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """The part of the loss's gradient that flows through the layer's largest weight into the noise.

    A chip maps a layer's largest |w| to its full window, so every weight's noise, in weight
    units, is proportional to that largest one (δ = used − w ∝ max|w| at fixed positions in
    the window). The straight-through gradient holds δ fixed and never sees that one outlier
    squeezes every other weight into a fraction of the window, under the same noise in µS;
    this term, ``Σ ∂L/∂used · δ / max|w|`` on the largest weight, lets training trade it off.
    """
    size = np.abs(w)
    flat = int(size.argmax())
    largest = float(size.flat[flat])
    out = np.zeros_like(w)
    if largest > 0:
        out.flat[flat] = np.sign(w.flat[flat]) * float((grad * (used - w)).sum()) / largest
    return out
