"""The two tiny models, as lists of ``(W, b)`` float32 layers: ReLU between layers, none after the last.

``softmax`` is softmax regression (one layer); ``linear`` is the same layer for the multi-label task (one
logistic regression per class); ``mlp`` has one hidden layer. Every backend starts from the same
NumPy initialisation (so the same seed gives the same run everywhere) and returns NumPy parameters, which are
evaluated here, in NumPy, identically for every backend.
"""

from __future__ import annotations

import itertools

import numpy as np

MODELS = ("softmax", "mlp", "linear")
HIDDEN = 64


def init_params(model: str, num_features: int, num_classes: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Glorot-uniform weights and zero biases, from ``seed`` (the same for every method: paired runs)."""
    if model not in MODELS:
        raise ValueError(f"model: must be one of {list(MODELS)}, got {model!r}")
    sizes = [num_features, HIDDEN, num_classes] if model == "mlp" else [num_features, num_classes]
    rng = np.random.default_rng([seed, 1, MODELS.index(model)])
    layers = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)
        layers.append((w, np.zeros(fan_out, dtype=np.float32)))
    return layers


def forward(layers, x: np.ndarray) -> np.ndarray:
    """The logits ``(N, C)``."""
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h


def predict(layers, x: np.ndarray) -> np.ndarray:
    return np.argmax(forward(layers, x), axis=-1)
