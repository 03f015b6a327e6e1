"""The core on NumPy: the analytic gradient of cbloss.class_balanced_loss_and_grad, chained by hand."""

from __future__ import annotations

import numpy as np

import cbloss

from . import Backend

try:  # NumPy's bfloat16 comes from ml_dtypes, which JAX and TensorFlow install
    import ml_dtypes
except ImportError:  # pragma: no cover - the numpy session: float16 only
    ml_dtypes = None


def chain(loss: np.ndarray, grad: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
    """Vector-Jacobian product of the core's gradient: per position for reduction='none', else scalar."""
    cotangent = np.asarray(cotangent, dtype=np.float64)
    return grad * (cotangent[..., None] if np.ndim(loss) else cotangent)


class NumpyBackend(Backend):
    name = "numpy"
    low_precision = ("float16",) if ml_dtypes is None else ("float16", "bfloat16")

    def loss_and_grad(self, logits, labels, weights, *, dtype, cotangent, options):
        dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype
        loss, grad = cbloss.class_balanced_loss_and_grad(
            logits.astype(dtype), labels if labels.dtype.kind == "i" else labels.astype(dtype), weights, **options
        )
        assert grad.dtype == dtype, grad.dtype  # the logits' dtype (docs/conventions.md §9)
        loss = np.asarray(loss, dtype=np.float64)
        return loss, chain(loss, np.asarray(grad, dtype=np.float64), cotangent)


BACKEND = NumpyBackend()
