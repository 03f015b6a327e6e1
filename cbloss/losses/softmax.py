r"""The class-balanced softmax cross-entropy (docs/conventions.md §4).

With ``p = softmax(z)``, the loss a position would have with hard label ``c`` is

    L_c = -log p_c = logsumexp(z) - z_c,        dL_c / dz_j = p_j - [j == c],

so a position with target coefficients ``a`` (``A = sum_c a_c``) has

    loss = A * logsumexp(z) - sum_c a_c z_c,    grad = A * p - a.

For a class index ``y`` with weight ``w_y``: ``loss = w_y * (logsumexp(z) - z_y)``, the paper's CB softmax.

Example:
    >>> import numpy as np, cbloss
    >>> z = np.array([[2.0, 0.0, -1.0]]); y = np.array([0])
    >>> float(cbloss.class_balanced_loss(z, y, [0.5, 1.0, 2.0], loss="softmax", reduction="sum"))  # doctest: +ELLIPSIS
    0.0849...
"""

from __future__ import annotations

from typing import Any

from ..primitives import Primitives
from ..targets import Coefficients


def hard(ops: Primitives, z: Any, labels: Any, coef: Any, gamma: float, with_grad: bool) -> tuple[Any, Any]:
    """``coef * L_y`` and its gradient, for class indices ``labels`` (P...) and coefficients ``coef`` (P...)."""
    if not with_grad:
        return coef * (ops.logsumexp(z) - ops.take_label(z, labels)), None
    p, lse = ops.softmax_and_logsumexp(z)
    p *= coef[..., None]  # our own temporary becomes the gradient
    grad = ops.subtract_at_label_(p, labels, coef)
    return coef * (lse - ops.take_label(z, labels)), grad


def dense(ops: Primitives, z: Any, a: Coefficients, gamma: float, with_grad: bool) -> tuple[Any, Any]:
    """``sum_c a_c L_c`` and its gradient for target coefficients ``a``."""
    total = a.total(ops, z.shape[-1])
    if not with_grad:
        return total * ops.logsumexp(z) - a.dot(ops, z), None
    p, lse = ops.softmax_and_logsumexp(z)
    # -sum_c a_c log p_c, with log p = z - logsumexp(z) formed once: no cancellation between two large sums.
    value = -a.dot(ops, z - lse[..., None])
    p *= total[..., None]  # our own temporary becomes the gradient
    return value, a.subtract_from_(ops, p)
