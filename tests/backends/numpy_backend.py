"""The core on NumPy: the analytic gradient of cbloss.class_balanced_loss_and_grad, chained by hand."""

from __future__ import annotations

import numpy as np

import cbloss

from . import Backend


def chain(loss: np.ndarray, grad: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
    """Vector-Jacobian product of the core's gradient: per position for reduction='none', else scalar."""
    cotangent = np.asarray(cotangent, dtype=np.float64)
    return grad * (cotangent[..., None] if np.ndim(loss) else cotangent)


class NumpyBackend(Backend):
    name = "numpy"
    low_precision = ("float16",)

    def loss_and_grad(self, logits, labels, weights, *, dtype, cotangent, options):
        loss, grad = cbloss.class_balanced_loss_and_grad(
            logits.astype(dtype), labels if labels.dtype.kind == "i" else labels.astype(dtype), weights, **options
        )
        loss = np.asarray(loss, dtype=np.float64)
        return loss, chain(loss, np.asarray(grad, dtype=np.float64), cotangent)


BACKEND = NumpyBackend()
