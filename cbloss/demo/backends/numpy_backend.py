"""NumPy: the core's analytic gradient ``cbloss.class_balanced_loss_and_grad``, hand-written backprop through
the tiny model and a plain Adam (demo code, not loss math)."""

from __future__ import annotations

import numpy as np

import cbloss

from . import ADAM_BETAS, ADAM_EPS, weights_at

NAME = "numpy"


def fit(layers, x, y, weights, *, loss, gamma, steps, lr, multi_label=None):
    params = [np.array(p, dtype=np.float32) for layer in layers for p in layer]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    w32 = None if weights is None else np.asarray(weights, dtype=np.float32)
    b1, b2 = ADAM_BETAS
    n_layers = len(layers)
    for t in range(1, steps + 1):
        # Forward, keeping each layer's input.
        inputs, h = [], x
        for i in range(n_layers):
            inputs.append(h)
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < n_layers - 1:
                h = np.maximum(h, 0)
        _, g = cbloss.class_balanced_loss_and_grad(
            h, y, weights_at(w32, t - 1), loss=loss, gamma=gamma, reduction="mean", multi_label=multi_label,
            validate=t == 1,
        )  # fmt: skip  # the labels do not change: check their values once
        # Backward through the layers.
        grads = [None] * len(params)
        for i in reversed(range(n_layers)):
            grads[2 * i] = inputs[i].T @ g
            grads[2 * i + 1] = g.sum(axis=0)
            if i:
                g = (g @ params[2 * i].T) * (inputs[i] > 0)
        # Adam (bias-corrected, eps outside the square root: the same update as torch.optim.Adam and optax.adam).
        scale = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        eps = ADAM_EPS * np.sqrt(1 - b2**t)
        for p, grad, m, v in zip(params, grads, first, second, strict=True):
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            p -= (scale * m / (np.sqrt(v) + eps)).astype(np.float32)
    return [(params[2 * i], params[2 * i + 1]) for i in range(n_layers)]
