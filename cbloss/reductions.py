"""The reductions, written once (docs/conventions.md §7).

A reduction turns per-position values into the loss: ``"none"`` keeps them, ``"sum"`` adds them, and the two
means divide the sum by a denominator, the sum of each position's *share*: 1 per counted position for
``"mean"``, the position's (un-smoothed) weight for ``"weighted_mean"`` (``w_y`` for a class index,
``sum_c t_c w_c`` for soft targets); ignored positions have share 0. A zero denominator gives loss 0 (as the
numerator times 0, so that a NaN still shows).

Every reduction is linear, so the engine folds its factor (1 or ``1 / denominator``) into the per-position
target coefficients before it evaluates a loss: the reduced loss is then the sum of the values, and the
gradient comes out reduced, without a pass over a (P, C) gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._namespace import device_of

__all__ = [
    "MEANS",
    "every_position",
    "hard_shares",
    "multi_hot_shares",
    "reduction_factor",
    "scaled_gradient",
    "soft_shares",
]

MEANS = ("mean", "weighted_mean")


def every_position(xp: Any, positions: Any) -> Any:
    """The shares of a ``"mean"`` in which every position counts: their number, a Python int, when the shapes
    fix it (no array work at all), else ones shaped like ``positions`` (unknown traced dimensions)."""
    shape = tuple(positions.shape)
    if all(isinstance(size, int) for size in shape):
        return math.prod(shape)
    return xp.ones_like(positions)


def hard_shares(xp: Any, reduction: str, label_weight: Any, valid: Any | None, dtype: Any) -> Any | None:
    """Denominator shares for class indices: ``label_weight`` (``w_y``, 0 where ignored) for
    ``"weighted_mean"``, else 1 per counted position (``valid``, None when every position counts). None for
    the reductions without a denominator."""
    if reduction == "weighted_mean":
        return label_weight
    if reduction == "mean":
        return every_position(xp, label_weight) if valid is None else xp.astype(valid, dtype)
    return None


def soft_shares(
    xp: Any, reduction: str, targets: Any, weights: Any | None, sample_weight: Any | None = None
) -> Any | None:
    """Denominator shares for soft targets (last axis: classes): ``s_p * sum_c t_c w_c`` for ``"weighted_mean"``
    (``sample_weight`` ``s``, None for all ones), 1 for ``"mean"`` (a count: sample weights do not change it), None
    otherwise."""
    if reduction == "weighted_mean":
        shares = xp.sum(targets, axis=-1) if weights is None else xp.matmul(targets, weights)
        return shares if sample_weight is None else shares * sample_weight
    if reduction == "mean":
        return every_position(xp, targets[..., 0])
    return None


def multi_hot_shares(xp: Any, reduction: str, position_weights: Any | None, targets: Any) -> Any | None:
    """Denominator shares for multi-hot targets (last axis: classes, docs/conventions.md §6.5): each position's
    weight ``position_weights`` for ``"weighted_mean"``, 1 per position for ``"mean"``, None otherwise."""
    if reduction == "weighted_mean":
        return position_weights
    if reduction == "mean":
        return every_position(xp, targets[..., 0])
    return None


def reduction_factor(
    xp: Any, reduction: str, shares: Any | None, global_sum: Callable[[Any], Any] | None = None, like: Any = None
) -> Any | None:
    """The factor ``f`` with ``loss = f * sum of the per-position values``: None for ``"none"``, 1.0 for
    ``"sum"``, ``1 / sum(shares)`` for the means (0 when that sum is 0). ``shares`` may be a count (a Python
    int, see :func:`every_position`): then ``f`` is a Python float. ``global_sum`` maps the local sum of the
    shares to the denominator to divide by (an adapter's all-reduce over data-parallel replicas); a count is
    then made an array in the dtype and on the device of ``like``."""
    if reduction == "none":
        return None
    if reduction == "sum":
        return 1.0
    if isinstance(shares, int):
        if global_sum is None:
            return 1.0 / shares if shares else 0.0
        shares = xp.asarray(float(shares), dtype=like.dtype, device=device_of(like))
    denominator = xp.sum(shares)
    if global_sum is not None:
        denominator = global_sum(denominator)
    # 1 / 0 = inf is computed and not selected
    return xp.where(denominator > 0, 1.0 / denominator, xp.zeros_like(denominator))


def scaled_gradient(xp: Any, grad: Any, cotangent: Any, reduction: str, axis: int = -1) -> Any:
    """The logits' cotangent from the loss's: ``cotangent * d loss / d z``, a new array. Per position for
    ``"none"`` (``cotangent`` has the positions' shape and broadcasts along the class axis ``axis`` of
    ``grad``), one number for the reduced losses. Adapters register it as their framework's backward."""
    return grad * (xp.expand_dims(cotangent, axis=axis) if reduction == "none" else cotangent)
